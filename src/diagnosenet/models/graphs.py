"""The paper's two graph expressions: ``SequentialGraph`` (stacked dense layers) and a custom
residual CNN for ECG, plus :func:`build_graph`, the one factory every training mode uses.

Graph interface (relied on by every transport): ``build()`` creates all variables (inside a
strategy scope if any), ``graph(x, training) -> logits``, ``trainable_variables`` (fixed
order: the flat-vector order of the replica contract), ``non_trainable_variables``,
``count_params()`` (trainable scalars, from shapes only).
"""
from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf

from diagnosenet.ecg.features import FEATURE_NAMES
from diagnosenet.models.layers import BatchNorm, Conv1D, Dense, Layer, Linear, Relu, dropout, max_pool
from diagnosenet.models.optim import Adam, CrossEntropy


#: apart by more than any (seed, site) of one stream, so no two streams share a mask seed
DROPOUT_STREAM_STRIDE = 1_000_000_007


class Graph(tf.Module):
    """Common part: layer list, seeds, loss/optimizer attached as in the paper's expression."""

    def __init__(self, *, loss=CrossEntropy, optimizer: Adam | None = None, dropout: float = 0.8,
                 seed: int = 1, name: str | None = None):
        super().__init__(name=name)
        if not 0.0 < dropout <= 1.0:
            raise ValueError(f"dropout is a keep probability in (0, 1], got {dropout}")
        self.loss = loss() if isinstance(loss, type) else loss
        self.optimizer = optimizer if optimizer is not None else Adam(lr=0.001)
        self.keep, self.seed = float(dropout), int(seed)
        #: whose dropout masks this graph draws: the worker index in a distributed run (0 for the
        #: first worker, the desktop run and every master), so that workers at the same local
        #: step do not drop the same units
        self.dropout_stream = 0
        self._trainable: list[tf.Variable] = []
        self._non_trainable: list[tf.Variable] = []
        self.dropout_step: tf.Variable | None = None

    def layers_in_order(self) -> list[Layer]:
        raise NotImplementedError

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers_in_order())

    @property
    def built(self) -> bool:
        return self.dropout_step is not None

    def build(self) -> "Graph":
        if self.built:
            return self
        for index, layer in enumerate(self.layers_in_order()):
            self._trainable += layer.build((self.seed, index))
            if isinstance(layer, BatchNorm):
                self._non_trainable += layer.moving_statistics()
        # dropout masks are drawn from (seed, site, stream, step): deterministic, different every
        # step and every worker
        self.dropout_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="dropout_step",
                                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        return self

    @property
    def trainable_variables(self):
        return tuple(self._trainable)

    @property
    def non_trainable_variables(self):
        return tuple(self._non_trainable)

    def _dropout_seeds(self, training: bool, step=None):
        """A function ``site -> seed`` for this forward pass (``None`` when not training).

        ``step``: the masks of that step, the counter untouched — for callers that number their
        steps themselves (grpc-async: workers share one counter on a parameter server, and its
        read and increment are two operations, so two workers could draw one mask)."""
        if not training or self.keep >= 1.0:
            return None
        if step is None:
            step = self.dropout_step.read_value()
            self.dropout_step.assign_add(1)
        else:
            step = tf.cast(step, tf.int64)
        first = self.seed * 100_003 + DROPOUT_STREAM_STRIDE * self.dropout_stream
        return lambda site: tf.stack([tf.constant(first + site, tf.int64), step])

    def _drop(self, x, seeds, site: int):
        return x if seeds is None else dropout(x, self.keep, seeds(site))


class SequentialGraph(Graph):
    """Stacked ``Relu`` layers and a ``Linear`` logits layer (paper, code example 1.1).

    ``dropout`` is a keep probability applied after every hidden layer while training.
    The first layer multiplies sparse batches directly.
    """

    def __init__(self, input_size: int, output_size: int, layers: Sequence[Dense], loss=CrossEntropy,
                 optimizer: Adam | None = None, dropout: float = 0.8, seed: int = 1):
        super().__init__(loss=loss, optimizer=optimizer, dropout=dropout, seed=seed, name="sequential_graph")
        layers = list(layers)
        if not layers or not isinstance(layers[-1], Linear) or any(not isinstance(l, Relu) for l in layers[:-1]):
            raise ValueError(f"layers must be Relu(...) layers followed by one Linear(...), got {layers}")
        sizes = [input_size] + [layer.out_size for layer in layers]
        for k, layer in enumerate(layers):
            if layer.in_size != sizes[k]:
                raise ValueError(f"layer {k} {layer!r} expects {layer.in_size} inputs but receives {sizes[k]}")
        if layers[-1].out_size != output_size:
            raise ValueError(f"last layer {layers[-1]!r} has {layers[-1].out_size} outputs, output_size is {output_size}")
        self.input_size, self.output_size, self.layers = int(input_size), int(output_size), layers

    def layers_in_order(self):
        return self.layers

    def __call__(self, x, training: bool = False, dropout_step=None):
        seeds = self._dropout_seeds(training, dropout_step)
        for site, layer in enumerate(self.layers[:-1]):
            x = self._drop(layer(x), seeds, site)
        return self.layers[-1](x)


#: the paper's lower-case spelling in code example 1.1
sequentialGraph = SequentialGraph


class _ResidualBlock:
    """Pre-activation block: (BN, ReLU, dropout, conv) twice; shortcut max-pooled when sub-sampling.

    A channel change on the shortcut goes through a 1x1 convolution.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, subsample: bool, momentum: float = 0.99):
        stride = 2 if subsample else 1
        self.subsample = subsample
        self.bn1, self.conv1 = BatchNorm(cin, momentum), Conv1D(cin, cout, kernel_size, stride)
        self.bn2, self.conv2 = BatchNorm(cout, momentum), Conv1D(cout, cout, kernel_size)
        self.project = Conv1D(cin, cout, 1) if cin != cout else None

    def layers(self) -> list[Layer]:
        return [self.bn1, self.conv1, self.bn2, self.conv2] + ([self.project] if self.project else [])

    def __call__(self, x, training, drop):
        h = self.conv1(drop(tf.nn.relu(self.bn1(x, training))))
        h = self.conv2(drop(tf.nn.relu(self.bn2(h, training))))
        shortcut = max_pool(x) if self.subsample else x
        if self.project is not None:
            shortcut = self.project(shortcut)
        return h + shortcut


class ResidualECGNet(Graph):
    """Residual 1-D CNN for 1,300-sample ECG windows (paper, Appendix D; after Hannun et al.).

    Stem: conv(k) -> BN -> ReLU, then a stride-2 conv(k) added to a max-pooled shortcut.
    Each stage: one sub-sampling block (halves the length, sets the stage's filters) and
    ``blocks_per_stage`` identity blocks. Head: BN -> ReLU -> flatten -> dense logits.
    With ``filters=(64, 128)`` the length goes 1300 -> 650 -> 325 -> 163.

    ``record_features = K > 0``: the last K inputs of a sample are the record's whole-record
    features (``window-ecg --record-features``); they go through BN -> dense ReLU
    (``feature_units``) -> dropout and join the flattened convolution output before the logits,
    so the net sees the rhythm of the whole record beside its windows.
    """

    def __init__(self, input_length: int = 1300, n_classes: int = 4, filters: Sequence[int] = (64, 128),
                 blocks_per_stage: int = 1, kernel_size: int = 16, dropout: float = 0.8, seed: int = 1,
                 loss=CrossEntropy, optimizer: Adam | None = None, batch_norm_momentum: float = 0.99,
                 record_features: int = 0, feature_units: int = 64):
        super().__init__(loss=loss, optimizer=optimizer, dropout=dropout, seed=seed, name="residual_ecg_net")
        if not filters:
            raise ValueError("filters must name at least one stage")
        self.record_features = int(record_features)
        if self.record_features < 0 or self.record_features >= int(input_length):
            raise ValueError(f"record_features must be in [0, {input_length}), got {record_features}")
        self.input_length, self.n_classes = int(input_length) - self.record_features, int(n_classes)
        f0 = filters[0]
        if not 0.0 <= batch_norm_momentum < 1.0:
            raise ValueError(f"batch_norm_momentum must be in [0, 1), got {batch_norm_momentum}")
        momentum = float(batch_norm_momentum)
        self.stem_conv, self.stem_bn = Conv1D(1, f0, kernel_size), BatchNorm(f0, momentum)
        self.stem_down = Conv1D(f0, f0, kernel_size, stride=2)
        self.blocks, cin = [], f0
        for cout in filters:
            self.blocks.append(_ResidualBlock(cin, cout, kernel_size, subsample=True, momentum=momentum))
            self.blocks += [_ResidualBlock(cout, cout, kernel_size, subsample=False, momentum=momentum)
                            for _ in range(blocks_per_stage)]
            cin = cout
        length = self.input_length
        for _ in range(1 + len(filters)):
            length = math.ceil(length / 2)
        self.head_bn = BatchNorm(cin, momentum)
        self.feature_layers = []
        if self.record_features:
            self.feature_layers = [BatchNorm(self.record_features, momentum), Relu(self.record_features, int(feature_units))]
        self.head = Linear(length * cin + (int(feature_units) if self.record_features else 0), self.n_classes)

    def layers_in_order(self):
        block_layers = [layer for block in self.blocks for layer in block.layers()]
        return [self.stem_conv, self.stem_bn, self.stem_down, *block_layers, self.head_bn, *self.feature_layers, self.head]

    def __call__(self, x, training: bool = False, dropout_step=None):
        seeds = self._dropout_seeds(training, dropout_step)
        sites = iter(range(10_000))

        def drop(h):
            return self._drop(h, seeds, next(sites))

        if self.record_features:
            x, features = x[:, : self.input_length], x[:, self.input_length:]
        x = tf.reshape(x, [-1, self.input_length, 1])
        h = tf.nn.relu(self.stem_bn(self.stem_conv(x), training))
        h = self.stem_down(drop(h)) + max_pool(h)
        for block in self.blocks:
            h = block(h, training, drop)
        h = tf.nn.relu(self.head_bn(h, training))
        h = tf.reshape(h, [tf.shape(h)[0], -1])
        if self.record_features:
            norm, dense = self.feature_layers
            f = norm(tf.reshape(features, [-1, 1, self.record_features]), training)
            h = tf.concat([h, drop(dense(tf.reshape(f, [-1, self.record_features])))], axis=1)
        return self.head(h)


#: ``models.ecg`` presets: paper-like (Appendix D; ~1.36 M parameters, the size the original
#: notes give) and the small default of the embedded run (~0.1 M)
ECG_PAPER = {"filters": [64, 128], "blocks_per_stage": 1, "kernel_size": 16}
ECG_SMALL = {"filters": [16, 32], "blocks_per_stage": 1, "kernel_size": 16}


def build_graph(task: str, model_config: dict, input_size: int, n_classes: int, *, seed: int = 1) -> Graph:
    """The graph of a task from the ``models.<task>`` config section (see config/README.md)."""
    config = dict(model_config)
    keep = float(config.pop("dropout_keep", 0.8))
    if task == "pmsi":
        units = [int(u) for u in config.pop("hidden_units", [256, 256])]
        sizes = [input_size, *units]
        layers = [Relu(a, b) for a, b in zip(sizes, sizes[1:])] + [Linear(sizes[-1], n_classes)]
        graph = SequentialGraph(input_size, n_classes, layers, dropout=keep, seed=seed)
    elif task == "ecg":
        graph = ResidualECGNet(
            input_length=input_size, n_classes=n_classes,
            filters=[int(f) for f in config.pop("filters", ECG_SMALL["filters"])],
            blocks_per_stage=int(config.pop("blocks_per_stage", ECG_SMALL["blocks_per_stage"])),
            kernel_size=int(config.pop("kernel_size", ECG_SMALL["kernel_size"])), dropout=keep, seed=seed,
            batch_norm_momentum=float(config.pop("batch_norm_momentum", 0.99)),
            record_features=len(FEATURE_NAMES) if config.pop("record_features", False) else 0,
            feature_units=int(config.pop("feature_units", 64)))
    else:
        raise ValueError(f"task must be 'pmsi' or 'ecg', got {task!r}")
    if config:
        raise ValueError(f"unknown keys in models.{task}: {sorted(config)}")
    return graph
