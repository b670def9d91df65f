"""Loss and optimizer of the paper's API (``dt.CrossEntropy``, ``dt.Adam(lr=...)``) on plain variables.

Adam keeps its slots in ``tf.Variable``s created by :meth:`Adam.build`, so calling ``build``
inside a ``tf.distribute`` strategy scope places them like the model's variables, and a
checkpoint can save and restore them (the original's restore never worked).
"""
from __future__ import annotations

import contextlib

import tensorflow as tf


class CrossEntropy:
    """Mean softmax cross-entropy of logits against integer class labels; with
    ``class_weights`` each row's term is multiplied by its class's weight (the mean is still
    over rows, as Keras's ``class_weight`` does, so the workers' row-weighted mean of
    gradients stays the gradient of the whole batch's loss)."""

    def __init__(self, class_weights=None):
        self.class_weights = None if class_weights is None else tf.constant(class_weights, tf.float32)

    def per_row(self, logits, labels):
        labels = tf.cast(labels, tf.int64)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        return losses if self.class_weights is None else losses * tf.gather(self.class_weights, labels)

    def __call__(self, logits, labels):
        return tf.reduce_mean(self.per_row(logits, labels))


class Adam:
    """Adam (Kingma & Ba 2014) exactly as Keras and TF1's ``AdamOptimizer`` compute it.

    The bias correction is folded into the step size and ``epsilon`` is added to the
    *uncorrected* ``sqrt(v)`` (the paper's "epsilon hat" form, end of its section 2):
    ``w -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``. At step ``t`` this equals
    Algorithm 1 with ``eps' = eps / sqrt(1 - b2^t)`` (3.2e-6 at ``t = 1``), so runs match
    Keras ``model.fit`` and the original TF1 code, not a literal reading of Algorithm 1.
    """

    def __init__(self, lr: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7):
        if lr <= 0:
            raise ValueError(f"Adam learning rate must be > 0, got {lr}")
        self.lr, self.beta_1, self.beta_2, self.epsilon = float(lr), beta_1, beta_2, epsilon
        self.m: list[tf.Variable] = []
        self.v: list[tf.Variable] = []
        self.iterations: tf.Variable | None = None

    def __repr__(self) -> str:
        return f"Adam(lr={self.lr})"

    @property
    def built(self) -> bool:
        return self.iterations is not None

    def build(self, variables) -> None:
        """Create the first/second moment slots of ``variables`` and the step counter."""
        if self.built:
            return
        self.m, self.v = [], []
        for variable in variables:   # each slot where its variable lives (one of several parameter servers)
            with colocated(variable):
                self.m.append(tf.Variable(tf.zeros(variable.shape, variable.dtype), trainable=False, name="adam_m"))
                self.v.append(tf.Variable(tf.zeros(variable.shape, variable.dtype), trainable=False, name="adam_v"))
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="adam_iterations",
                                      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def slot_variables(self) -> list[tf.Variable]:
        return [*self.m, *self.v]

    def apply_gradients(self, grads_and_vars) -> None:
        grads_and_vars = list(grads_and_vars)
        if not self.built:
            raise RuntimeError("Adam.build(variables) must be called before apply_gradients")
        if len(grads_and_vars) != len(self.m):
            raise ValueError(f"{len(grads_and_vars)} gradients for {len(self.m)} built variables")
        # TF's fused ApplyAdam kernel under its lock: variable, m and v change together. Written as
        # three separate assigns, two grpc-async workers updating the parameter server at once
        # could read a new m with a still-zero v and take a step of lr * m / eps (seen: the tiny
        # PMSI MLP's loss jumped from 1.4 to 5 in its first epoch, now and then).
        t = tf.cast(self.iterations + 1, tf.float32)
        for index, ((grad, var), m, v) in enumerate(zip(grads_and_vars, self.m, self.v)):
            self._apply_one(index, grad, var, m, v, t)
        self.iterations.assign_add(1)

    def _apply_one(self, index: int, grad, var, m, v, t) -> None:
        """``grad`` may be a ``tf.IndexedSlices`` (a kernel read by rows): Adam moves every row, so dense."""
        grad = tf.convert_to_tensor(grad, tf.float32)
        tf.raw_ops.ResourceApplyAdam(
            var=var.handle, m=m.handle, v=v.handle, beta1_power=tf.pow(self.beta_1, t),
            beta2_power=tf.pow(self.beta_2, t), lr=tf.constant(self.lr, tf.float32),
            beta1=tf.constant(self.beta_1, tf.float32), beta2=tf.constant(self.beta_2, tf.float32),
            epsilon=tf.constant(self.epsilon, tf.float32), grad=grad, use_locking=True)


class LazyAdam(Adam):
    """Adam whose first variable, a ``(inputs, units)`` kernel fed a sparse input, moves by rows:
    a row without a gradient on this step keeps its weights **and** both moments (TensorFlow's
    LazyAdam, for the dense gradient of a sparse matmul). Every other variable, the step count
    and the bias correction are Adam's. ``lazy_first=False`` (a model whose first variable is
    not such a kernel, e.g. the ECG CNN) is Adam.

    Why: with Adam a row whose feature is absent still moves (its moment decays), so every
    weight changes every step; with lazy rows only the rows a batch touched change, which lets
    ``mpi-async`` reply with those rows instead of the whole model. The three row updates are
    separate scatters (no fused sparse Adam kernel exists): concurrent ``grpc-async`` workers
    may interleave them, like Hogwild! updates of one row.
    """

    def __init__(self, lr: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 lazy_first: bool = True):
        super().__init__(lr, beta_1, beta_2, epsilon)
        self.lazy_first = lazy_first

    def __repr__(self) -> str:
        return f"LazyAdam(lr={self.lr})"

    def _apply_one(self, index: int, grad, var, m, v, t) -> None:
        if index or not self.lazy_first or len(var.shape) != 2:
            return super()._apply_one(index, grad, var, m, v, t)
        if isinstance(grad, tf.IndexedSlices):   # the kernel was read by rows: its gradient is those rows
            values, rows = grad.values, tf.cast(grad.indices, tf.int64)
        else:
            values, rows = grad, tf.range(tf.shape(grad, out_type=tf.int64)[0])
        has_gradient = tf.reduce_any(tf.not_equal(values, 0.0), axis=1)   # as exchange.nonzero_rows
        g, rows = tf.boolean_mask(values, has_gradient), tf.boolean_mask(rows, has_gradient)
        with tf.device(var.device):   # where the rows live: only g travels to a parameter server
            lr_t = self.lr * tf.sqrt(1 - tf.pow(self.beta_2, t)) / (1 - tf.pow(self.beta_1, t))
            m_old, v_old = m.sparse_read(rows), v.sparse_read(rows)
            m_rows = m_old + (g - m_old) * (1 - self.beta_1)           # ApplyAdam's own form
            v_rows = v_old + (g * g - v_old) * (1 - self.beta_2)
            m.scatter_update(tf.IndexedSlices(m_rows, rows))
            v.scatter_update(tf.IndexedSlices(v_rows, rows))
            var.scatter_sub(tf.IndexedSlices(lr_t * m_rows / (tf.sqrt(v_rows) + self.epsilon), rows))


def colocated(variable):
    """A scope whose new variables are created where ``variable`` lives, under a distribution
    strategy (as Keras' slots were); outside one there is a single device and nothing to do."""
    if tf.distribute.has_strategy():
        return tf.distribute.get_strategy().extended.colocate_vars_with(variable)
    return contextlib.nullcontext()


def make_optimizer(name: str, lr: float, graph) -> Adam:
    """``train.optimizer`` for ``graph``: ``adam``, or ``lazy-adam`` lazy on the graph's input kernel."""
    if name == "adam":
        return Adam(lr=lr)
    if name == "lazy-adam":
        return LazyAdam(lr=lr, lazy_first=input_kernel(graph) is not None)
    raise ValueError(f"optimizer {name!r} is neither 'adam' nor 'lazy-adam'")


def input_kernel(graph) -> tuple[int, int] | None:
    """``(inputs, units)`` of the graph's first variable when it is the kernel fed by the raw
    input (an MLP's first layer, whose rows a sparse input leaves at zero gradient), else ``None``."""
    from diagnosenet.models.graphs import SequentialGraph

    if not isinstance(graph, SequentialGraph) or not graph.layers:
        return None
    return graph.input_size, int(graph.layers[0].out_size)
