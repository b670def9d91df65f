"""Layers of the paper's graph API on plain ``tf.Variable``s (no Keras).

Plain variables let the same graphs run in the desktop loop, behind MPI and inside a
``tf.distribute`` strategy scope with a custom loop (Keras 3 has no parameter-server
support). Every layer knows its parameter shapes before it is built, so
``count_params()`` of a 77 M-parameter graph allocates nothing. Initial values come from
stateless random ops seeded per layer, so a seed fixes a graph's weights exactly.
"""
from __future__ import annotations

import math

import tensorflow as tf


def glorot(shape: tuple[int, ...], fan_in: int, fan_out: int, seed: tuple[int, int]) -> tf.Tensor:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return tf.random.stateless_uniform(shape, seed=seed, minval=-limit, maxval=limit, dtype=tf.float32)


class Layer(tf.Module):
    """A layer: parameter shapes known up front, variables created by :meth:`build`."""

    def shapes(self) -> list[tuple[int, ...]]:
        raise NotImplementedError

    def count_params(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes())

    def build(self, seed: tuple[int, int]) -> list[tf.Variable]:
        raise NotImplementedError


class Dense(Layer):
    """``h = f(x W + b)``; a ``tf.SparseTensor`` input is multiplied without densifying it.

    ``read_rows``: a sparse input reads only the rows of ``W`` its features select (a gather,
    which runs where ``W`` lives), so the gradient is those rows (``tf.IndexedSlices``). On a
    parameter server that is what travels per step instead of the whole kernel; the product
    is the same.
    """

    activation = None
    read_rows = False

    def __init__(self, in_size: int, out_size: int):
        super().__init__(name=type(self).__name__.lower())
        if in_size < 1 or out_size < 1:
            raise ValueError(f"{type(self).__name__}({in_size}, {out_size}): sizes must be >= 1")
        self.in_size, self.out_size = int(in_size), int(out_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_size}, {self.out_size})"

    def shapes(self):
        return [(self.in_size, self.out_size), (self.out_size,)]

    def build(self, seed):
        self.kernel = tf.Variable(glorot(self.shapes()[0], self.in_size, self.out_size, seed), name="kernel")
        self.bias = tf.Variable(tf.zeros([self.out_size]), name="bias")
        return [self.kernel, self.bias]

    def __call__(self, x):
        if isinstance(x, tf.SparseTensor) and self.read_rows:
            z = sparse_matmul_by_rows(x, self.kernel)
        elif isinstance(x, tf.SparseTensor):
            z = tf.sparse.sparse_dense_matmul(x, self.kernel)
        else:
            z = tf.matmul(x, self.kernel)
        z = z + self.bias
        return self.activation(z) if self.activation is not None else z


def sparse_matmul_by_rows(x: tf.SparseTensor, kernel: tf.Variable) -> tf.Tensor:
    """``x @ kernel`` from the rows of ``kernel`` that ``x``'s columns name only."""
    columns, local = tf.unique(x.indices[:, 1])
    rows = tf.gather(kernel, columns)
    remapped = tf.SparseTensor(tf.stack([x.indices[:, 0], tf.cast(local, tf.int64)], axis=1), x.values,
                               tf.stack([x.dense_shape[0], tf.cast(tf.size(columns), tf.int64)]))
    return tf.sparse.sparse_dense_matmul(remapped, rows)


class Relu(Dense):
    """Fully connected layer with a ReLU activation (paper: ``dt.Relu(in, out)``)."""

    activation = staticmethod(tf.nn.relu)


class Linear(Dense):
    """Fully connected layer without activation, used as the logits layer (``dt.Linear``)."""


class Conv1D(Layer):
    """1-D convolution, ``same`` padding, so a stride of 2 maps length ``L`` to ``ceil(L/2)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(name="conv1d")
        self.cin, self.cout, self.k, self.stride = in_channels, out_channels, kernel_size, stride

    def shapes(self):
        return [(self.k, self.cin, self.cout), (self.cout,)]

    def build(self, seed):
        self.kernel = tf.Variable(glorot(self.shapes()[0], self.k * self.cin, self.k * self.cout, seed), name="kernel")
        self.bias = tf.Variable(tf.zeros([self.cout]), name="bias")
        return [self.kernel, self.bias]

    def __call__(self, x):
        return tf.nn.conv1d(x, self.kernel, stride=self.stride, padding="SAME") + self.bias


class BatchNorm(Layer):
    """Batch normalisation over (batch, time); batch statistics when training, moving ones otherwise.

    The original never switched its CNN's batch norm to training mode; here the switch is the
    ``training`` argument of every call, and the moving statistics are updated only then.
    """

    def __init__(self, channels: int, momentum: float = 0.99, epsilon: float = 1e-3):
        super().__init__(name="batch_norm")
        self.channels, self.momentum, self.epsilon = channels, momentum, epsilon

    def shapes(self):
        return [(self.channels,), (self.channels,)]

    def build(self, seed):
        self.gamma = tf.Variable(tf.ones([self.channels]), name="gamma")
        self.beta = tf.Variable(tf.zeros([self.channels]), name="beta")
        moving = dict(trainable=False, aggregation=tf.VariableAggregation.MEAN)
        self.moving_mean = tf.Variable(tf.zeros([self.channels]), name="moving_mean", **moving)
        self.moving_variance = tf.Variable(tf.ones([self.channels]), name="moving_variance", **moving)
        return [self.gamma, self.beta]

    def moving_statistics(self) -> list[tf.Variable]:
        return [self.moving_mean, self.moving_variance]

    def __call__(self, x, training: bool):
        if training:
            mean, variance = tf.nn.moments(x, axes=[0, 1])
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + variance * (1.0 - m))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        return tf.nn.batch_normalization(x, mean, variance, self.beta, self.gamma, self.epsilon)


def dropout(x, keep: float, seed) -> tf.Tensor:
    """Inverted dropout with a *keep* probability (paper: ``dropout=0.8`` keeps 80 % of units)."""
    if keep >= 1.0:
        return x
    mask = tf.random.stateless_uniform(tf.shape(x), seed=seed) < keep
    return tf.where(mask, x / keep, tf.zeros_like(x))


def max_pool(x) -> tf.Tensor:
    """Halve the time axis (``same`` padding, like a stride-2 convolution)."""
    return tf.nn.max_pool1d(x, ksize=2, strides=2, padding="SAME")
