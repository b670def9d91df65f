"""The paper's graph API: parameter counts of Table 4, dropout keep semantics, batch norm switch."""
from pathlib import Path

import numpy as np
import pytest

from diagnosenet.experiments import PAPER_TABLE4, mlp_param_count

pytestmark = pytest.mark.tensorflow


def mlp(units, layers, inputs=14637, outputs=14, **kw):
    import diagnosenet as dt

    sizes = [inputs] + [units] * layers
    stacked = [dt.Relu(a, b) for a, b in zip(sizes, sizes[1:])] + [dt.Linear(units, outputs)]
    return dt.SequentialGraph(input_size=inputs, output_size=outputs, layers=stacked,
                              loss=dt.CrossEntropy, optimizer=dt.Adam(lr=0.001), **kw)


@pytest.mark.parametrize("units,layers,expected", [(128, 2, 1_891_982), (512, 4, 8_289_806), (4096, 2, 76_795_918)])
def test_table4_exact_counts(units, layers, expected):
    graph = mlp(units, layers)
    assert graph.count_params() == expected
    assert not graph.built  # counted from shapes: 77 M weights were never allocated


def test_every_table4_cell_matches_the_paper_to_its_printed_precision():
    """The paper prints 0.01 M; 32x8 (476,270) is printed truncated as 0.47, all others rounded."""
    for (units, layers), millions in PAPER_TABLE4.items():
        count = mlp(units, layers).count_params()
        assert count == mlp_param_count(14637, [units] * layers, 14), (units, layers)
        assert abs(count / 1e6 - millions) < 0.01, (units, layers)
    assert len(PAPER_TABLE4) == 24


def test_count_params_equals_built_variables():
    graph = mlp(8, 2, inputs=30, outputs=3).build()
    assert graph.count_params() == sum(int(np.prod(v.shape)) for v in graph.trainable_variables)


def test_sequential_graph_names_the_mismatched_layer():
    import diagnosenet as dt

    with pytest.raises(ValueError, match="layer 1"):
        dt.SequentialGraph(10, 2, [dt.Relu(10, 8), dt.Relu(7, 4), dt.Linear(4, 2)])
    with pytest.raises(ValueError, match="output_size"):
        dt.SequentialGraph(10, 3, [dt.Relu(10, 8), dt.Linear(8, 2)])
    with pytest.raises(ValueError, match="keep probability"):
        dt.SequentialGraph(10, 2, [dt.Relu(10, 8), dt.Linear(8, 2)], dropout=0.0)


def test_dropout_is_a_keep_probability():
    import tensorflow as tf

    from diagnosenet.models.layers import dropout

    x = tf.ones([200_000])
    out = dropout(x, 0.8, tf.constant([1, 2], tf.int64)).numpy()
    assert abs(np.mean(out != 0) - 0.8) < 0.01          # 80 % of units kept, not dropped
    np.testing.assert_allclose(out[out != 0], 1 / 0.8)   # inverted scaling keeps the expectation
    assert dropout(x, 1.0, None) is x


def test_dropout_only_while_training():
    import tensorflow as tf

    graph = mlp(64, 2, inputs=20, outputs=3, dropout=0.5).build()
    x = tf.random.stateless_normal([8, 20], seed=[0, 1])
    np.testing.assert_array_equal(graph(x, training=False).numpy(), graph(x, training=False).numpy())
    a, b = graph(x, training=True).numpy(), graph(x, training=True).numpy()
    assert not np.allclose(a, b)  # a fresh mask every training step


def test_workers_at_the_same_step_draw_different_dropout_masks_and_the_first_draws_the_desktop_ones():
    """Synchronous workers step together: with one mask stream they would drop the same units
    in every micro-batch of a step. Worker 0's stream is the desktop run's (one worker = desktop)."""
    import tensorflow as tf

    x = tf.random.stateless_normal([8, 20], seed=[0, 1])
    outputs = []
    for stream in (None, 0, 1, 2):
        graph = mlp(64, 2, inputs=20, outputs=3, dropout=0.5).build()   # same seed: same weights
        if stream is not None:
            graph.dropout_stream = stream
        outputs.append([graph(x, training=True).numpy() for _ in range(2)])   # local steps 0 and 1
    desktop, first, second, third = outputs
    np.testing.assert_array_equal(first, desktop)
    for step in (0, 1):
        assert not np.allclose(second[step], first[step]) and not np.allclose(third[step], second[step]), step


def test_a_numbered_step_draws_that_steps_masks_and_leaves_the_counter_alone():
    """grpc-async numbers its steps on the chief (one counter on a parameter server, read and
    advanced by every worker, could give two workers one mask): step ``s`` given explicitly
    draws what the counter draws at ``s``, in both graph kinds, and does not advance it."""
    import tensorflow as tf

    from diagnosenet.models.graphs import ResidualECGNet

    cases = [(lambda: mlp(64, 2, inputs=20, outputs=3, dropout=0.5).build(), tf.random.stateless_normal([8, 20], seed=[0, 1])),
             (lambda: ResidualECGNet(input_length=64, filters=(4,), kernel_size=3, dropout=0.5).build(),
              tf.random.stateless_normal([4, 64], seed=[0, 2]))]
    for build, x in cases:
        counted = build()
        by_counter = [counted(x, training=True).numpy() for _ in range(3)]   # steps 0, 1, 2
        numbered = build()
        for step in (2, 0, 1):
            np.testing.assert_array_equal(numbered(x, training=True, dropout_step=step).numpy(), by_counter[step])
        assert int(numbered.dropout_step.numpy()) == 0
        assert not np.allclose(by_counter[0], by_counter[1])


def test_every_worker_replica_draws_its_own_dropout_stream():
    from diagnosenet.training.run import make_replica
    from diagnosenet.training.settings import TrainSettings

    settings = TrainSettings(task="pmsi", mode="mpi-sync", workers=3, dataset_dir=Path("unused"),
                             shards_dir=Path("unused"), out_dir=Path("unused"),
                             model={"hidden_units": [8], "dropout_keep": 0.5}, seed=3)
    assert [make_replica(settings, 20, 3, worker=w).graph.dropout_stream for w in (0, 1, 2)] == [0, 1, 2]
    assert make_replica(settings, 20, 3).graph.dropout_stream == 0


def test_batch_norm_uses_batch_statistics_in_training_and_moving_ones_in_inference():
    import tensorflow as tf

    from diagnosenet.models.layers import BatchNorm

    bn = BatchNorm(3, momentum=0.5)
    bn.build((0, 0))
    x = tf.constant(np.random.default_rng(0).normal(5.0, 2.0, size=(16, 10, 3)), tf.float32)
    inference = bn(x, training=False).numpy()
    np.testing.assert_allclose(inference, x.numpy() / np.sqrt(1 + 1e-3), rtol=1e-5)  # fresh stats: 0, 1
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.0)                         # inference updates nothing
    train = bn(x, training=True).numpy()
    np.testing.assert_allclose(train.mean(axis=(0, 1)), 0.0, atol=1e-4)
    mean = x.numpy().mean(axis=(0, 1))
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.5 * mean, rtol=1e-5)       # momentum 0.5 update


def test_residual_ecg_net_shapes_and_paper_like_size():
    import tensorflow as tf

    from diagnosenet.models.graphs import ECG_PAPER, ECG_SMALL, ResidualECGNet, build_graph

    paper = build_graph("ecg", ECG_PAPER, 1300, 4)
    assert abs(paper.count_params() / 1.36e6 - 1) < 0.03   # the notes' ~1.36 M
    assert paper.head.in_size == 163 * 128                  # 1300 -> 650 -> 325 -> 163
    assert build_graph("ecg", {}, 1300, 4).count_params() == ResidualECGNet(**ECG_SMALL).count_params() < 2e5
    small = build_graph("ecg", {"filters": [4, 8], "blocks_per_stage": 0, "kernel_size": 5}, 1300, 4).build()
    logits = small(tf.zeros([3, 1300]), training=False)
    assert logits.shape == (3, 4)
    assert small.count_params() == sum(int(np.prod(v.shape)) for v in small.trainable_variables)
    assert len(small.non_trainable_variables) == 2 * 6     # stem, 2 per block x 2 blocks, head


def test_record_features_branch_reads_the_last_inputs_beside_the_windows():
    """``record_features: true``: the last 47 inputs are whole-record features, not signal."""
    import tensorflow as tf

    from diagnosenet.ecg.features import FEATURE_NAMES
    from diagnosenet.models.graphs import build_graph

    k = len(FEATURE_NAMES)
    config = {"filters": [4, 8], "blocks_per_stage": 0, "kernel_size": 5, "record_features": True, "feature_units": 16}
    net = build_graph("ecg", config, 1300 + k, 4).build()
    plain = build_graph("ecg", {key: v for key, v in config.items() if key not in ("record_features", "feature_units")}, 1300, 4)
    assert net.input_length == 1300 and net.head.in_size == plain.head.in_size + 16
    assert net.count_params() == plain.count_params() + 2 * k + (k * 16 + 16) + 16 * 4
    assert net.count_params() == sum(int(np.prod(v.shape)) for v in net.trainable_variables)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 1300 + k)).astype(np.float32)
    changed = x.copy()
    changed[:, 1300:] += 3.0
    before, after = net(tf.constant(x), training=False).numpy(), net(tf.constant(changed), training=False).numpy()
    assert before.shape == (5, 4) and not np.allclose(before, after)  # the features reach the logits
    with pytest.raises(ValueError, match="record_features"):
        build_graph("ecg", config, 40, 4)


def test_build_graph_rejects_unknown_keys_and_tasks():
    from diagnosenet.models.graphs import build_graph

    with pytest.raises(ValueError, match="unknown keys"):
        build_graph("pmsi", {"hidden_unit": [3]}, 10, 2)
    with pytest.raises(ValueError, match="task"):
        build_graph("eeg", {}, 10, 2)


def test_every_top_level_name_of_the_paper_api_resolves():
    import diagnosenet as dt

    for name in dt.__all__:
        assert getattr(dt, name) is not None, name
    assert dt.sequentialGraph is dt.SequentialGraph
    with pytest.raises(AttributeError, match="no attribute"):
        dt.NotAModel
