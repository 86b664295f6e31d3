"""The transformer on dask arrays: lazy, correctly shaped, exact, bounded memory."""

import numpy as np
import pytest

from skconv import BatchConv2DTransformer

da = pytest.importorskip("dask.array")


def make_conv(**kwargs):
    params = dict(filters="edges", activation="split", pooling="max", image_shape=(28, 28))
    params.update(kwargs)
    return BatchConv2DTransformer(**params)


def test_transform_is_lazy_with_the_right_shape_and_chunks():
    rng = np.random.default_rng(0)
    X = rng.random((1000, 784)).astype(np.float32)
    conv = make_conv()
    Xd = da.from_array(X, chunks=(300, 200))  # column chunks are merged first
    Z = conv.transform(Xd)
    assert isinstance(Z, da.Array)
    n_out = conv.fit(X[:1]).get_feature_names_out().size
    assert Z.shape == (1000, n_out) == (1000, 4 * 2 * 14 * 14)
    assert Z.chunks == ((300, 300, 300, 100), (n_out,))
    assert Z.dtype == np.float32
    # float32 GEMMs that span a different number of images round differently
    # (by an ulp), so chunks of 300 agree with one batch of 1000 to rounding.
    np.testing.assert_allclose(Z.compute(), conv.transform(X), rtol=2e-6, atol=1e-6)


def test_nothing_is_computed_until_asked():
    calls = []

    def loader(block):
        if block.size:  # dask may probe with an empty block when building the graph
            calls.append(block.shape)
        return block

    X = da.ones((100, 64), chunks=(25, 64)).map_blocks(loader, dtype=float)
    Z = BatchConv2DTransformer(filters="laplacian").transform(X)
    assert calls == [] and Z.shape == (100, 64)
    Z.compute()
    assert len(calls) >= 4


def test_empty_and_one_row_blocks():
    rng = np.random.default_rng(1)
    X = rng.random((7, 64))
    conv = BatchConv2DTransformer(filters="sobel", pooling="mean")
    Xd = da.from_array(X, chunks=((0, 1, 6), (64,)))
    Z = conv.transform(Xd)
    assert Z.chunks[0] == (0, 1, 6)
    np.testing.assert_allclose(Z.compute(), conv.transform(X), rtol=1e-12)
    empty = conv.transform(Xd[:0])
    assert empty.shape == (0, conv.fit(X).get_feature_names_out().size)
    assert empty.compute().shape == empty.shape


def test_errors_before_any_compute():
    conv = make_conv()
    with pytest.raises(ValueError, match="n_features=100 per row, but image_shape=.*784"):
        conv.transform(da.zeros((10, 100), chunks=5))
    with pytest.raises(ValueError, match="2-D"):
        conv.transform(da.zeros((10, 28, 28), chunks=5))
    fitted = BatchConv2DTransformer().fit(np.zeros((2, 64)))
    with pytest.raises(ValueError, match="expecting 64 features"):
        fitted.transform(da.zeros((3, 49), chunks=3))
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        BatchConv2DTransformer(filters="pca").transform(da.zeros((3, 64), chunks=3))


def test_learned_filters_fitted_on_numpy_apply_to_dask():
    rng = np.random.default_rng(2)
    X = rng.random((200, 64))
    conv = BatchConv2DTransformer(
        filters="pca", random_state=0, filter_params={"n_filters": 3, "size": 3}
    ).fit(X)
    # Blocks of 50 rows may run another strategy than the 200 rows at once
    # (auto decides by the batch's size): equal to rounding, not bit for bit.
    np.testing.assert_allclose(
        conv.transform(da.from_array(X, chunks=50)).compute(), conv.transform(X), atol=1e-12
    )


def test_pipeline_with_dask_input():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X = np.random.default_rng(3).random((40, 64))
    pipe = make_pipeline(
        BatchConv2DTransformer(filters="edges", pooling="max"), FunctionTransformer(np.abs)
    )
    Z = pipe.fit(X).transform(da.from_array(X, chunks=10))
    assert isinstance(Z, da.Array)
    np.testing.assert_allclose(Z.compute(), pipe.transform(X))


def test_under_dask_ml_parallel_post_fit():
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X = np.random.default_rng(4).random((60, 64))
    conv = BatchConv2DTransformer(filters="edges", activation="split", pooling="max")
    wrapped = wrappers.ParallelPostFit(conv).fit(X)
    Z = wrapped.transform(da.from_array(X, chunks=20))
    np.testing.assert_allclose(np.asarray(Z.compute()), conv.transform(X))


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def _start_tracing():
    import tracemalloc

    tracemalloc.start()


def _traced_peak():
    import tracemalloc

    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_local_cluster_exact_and_bounded_memory(client):
    n_rows, chunk_rows = 20_000, 1_000
    X = da.random.RandomState(0).random_sample((n_rows, 784), chunks=(chunk_rows, -1))
    conv = make_conv(pooling=None, activation="abs")  # output as large as the input
    Z = conv.transform(X)
    assert Z.shape == (n_rows, 4 * 784)
    assert Z.chunks[0] == (chunk_rows,) * (n_rows // chunk_rows)

    # Each worker handles its own chunks: reduce on the cluster and measure
    # what the workers allocated at their peak.
    client.run(_start_tracing)
    column_sums = Z.sum(axis=0).compute()
    peaks = client.run(_traced_peak)
    total = n_rows * 784 * 8 * (1 + 4)  # input and features of the whole set
    per_chunk = total // (n_rows // chunk_rows)
    assert len(peaks) == 2
    for peak in peaks.values():
        assert peak < 8 * per_chunk < total / 2, (peak / 2**20, per_chunk / 2**20)

    # The same numbers as the single-process numpy path, bit for bit.
    X_local = X.compute()
    expected = conv.transform(X_local)
    np.testing.assert_array_equal(Z.compute(), expected)
    np.testing.assert_allclose(column_sums, expected.sum(axis=0), rtol=1e-10)


def test_container_output_never_computes_dask_input():
    """Under transform_output="pandas" the result is a lazy dask DataFrame with the
    transformer's column names; "polars" has no lazy dask form and is refused."""
    pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    sklearn = pytest.importorskip("sklearn")
    calls = []

    def loader(block):
        if block.size:
            calls.append(block.shape)
        return block

    X = np.random.default_rng(1).random((10, 784))
    Xd = da.from_array(X, chunks=(4, 784)).map_blocks(loader, meta=np.empty((0, 0)))
    conv = make_conv()
    frame = conv.set_output(transform="pandas").transform(Xd)
    assert isinstance(frame, dd.DataFrame) and calls == []
    expected = make_conv().fit(X[:1])
    assert list(frame.columns) == list(expected.get_feature_names_out())
    np.testing.assert_array_equal(frame.compute().to_numpy(), expected.transform(X))
    calls.clear()
    with sklearn.config_context(transform_output="polars"):
        with pytest.raises(ValueError, match="transform_output='polars'"):
            make_conv().transform(Xd)
    assert calls == []


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("pooling", ["max", None])  # fused blocks, and conv2d's maps
def test_non_finite_rows_of_a_dask_block_raise(bad, pooling):
    # numpy X is refused by validate_data; a dask block reaches the engine
    # unchecked, which must refuse it itself instead of returning features.
    X = np.random.default_rng(1).random((60, 784)).astype(np.float32)
    X[45, 300] = bad
    conv = make_conv(pooling=pooling, activation="relu")
    Z = conv.transform(da.from_array(X, chunks=(20, 784)))
    with pytest.raises(ValueError, match="images must be finite"):
        Z.compute()
