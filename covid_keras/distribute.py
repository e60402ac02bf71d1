"""Which `tf.distribute` strategy a training runs under, and which of its processes writes the outputs.

    strategy = choose_strategy("auto")       # first thing in a command: before any TensorFlow op
    with worker_scratch_dir(run_dir, strategy) as out:   # run_dir on the chief, a temporary folder elsewhere
        ... train, writing into `out` ...

Several machines are TensorFlow's own `MultiWorkerMirroredStrategy`, told about the cluster by
`TF_CONFIG` (a Kubernetes Job, a hand-started worker, scripts/launch_local_workers.sh) or by a
cluster resolver such as `tf.distribute.cluster_resolver.SlurmClusterResolver`; nothing here
schedules anything. Every worker runs the same program on its share of each global batch. All of
them must take part in every collective step, saving included (reading a variable synchronised on
read is one), so every worker saves; only the chief saves where it lasts, the others into a
temporary folder that is removed (TensorFlow's "Multi-worker training with Keras" guide).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pathlib
import shutil
import tempfile
from typing import Callable, Iterator, Mapping, TypeVar

import keras
import tensorflow as tf

from covid_keras.choices import STRATEGIES
from covid_keras.cluster import TF_CONFIG, cluster_workers  # noqa: F401  (TF_CONFIG: part of this API)

T = TypeVar("T")


def choose_strategy(
    name: str = "auto",
    cluster_resolver: tf.distribute.cluster_resolver.ClusterResolver | None = None,
    environ: Mapping[str, str] | None = None,
) -> tf.distribute.Strategy:
    """The strategy `name` asks for; create it before any other TensorFlow op (collectives are
    configured at program start, so MultiWorkerMirroredStrategy refuses to come later).

    "auto": multi-worker when TF_CONFIG (or `cluster_resolver`) names several processes, else
    mirrored when there are several local GPUs, else one device. "one": TensorFlow's default
    strategy, exactly what a plain program does. "mirrored": every local GPU (or the CPU).
    "multi-worker": MultiWorkerMirroredStrategy from `cluster_resolver`, else from TF_CONFIG.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    several_workers = cluster_resolver is not None or cluster_workers(environ) > 1
    if name == "auto":
        if several_workers:
            name = "multi-worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "one"
    if name == "one":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if cluster_resolver is None and cluster_workers(environ) == 0:
        raise ValueError(f"strategy multi-worker needs ${TF_CONFIG} naming the cluster and this task "
                         "(see docs/distributed.md)")
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=cluster_resolver)


def _task(strategy: tf.distribute.Strategy) -> tuple[str | None, int, list[str]]:
    """(task type, task id, job names) of this process; (None, 0, []) outside a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None, 0, []
    return resolver.task_type, int(resolver.task_id or 0), list(resolver.cluster_spec().jobs)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the outputs: the "chief" task, else worker 0, else the only process."""
    task_type, task_id, jobs = _task(strategy)
    return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in jobs)


def worker_count(strategy: tf.distribute.Strategy) -> int:
    """How many processes train together (1 outside a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1
    spec = resolver.cluster_spec()
    return sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker"))


@contextlib.contextmanager
def worker_scratch_dir(directory: str | os.PathLike, strategy: tf.distribute.Strategy) -> Iterator[pathlib.Path]:
    """`directory` on the chief; on any other worker a new temporary folder, removed on the way out
    (even after an error), so that only the chief's outputs remain."""
    directory = pathlib.Path(directory)
    if is_chief(strategy):
        yield directory
        return
    task_type, task_id, _ = _task(strategy)
    scratch = pathlib.Path(tempfile.mkdtemp(prefix=f"{directory.name}-{task_type}{task_id}-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fit_ready(model: keras.Model, strategy: tf.distribute.Strategy) -> keras.Model:
    """`model`, able to `fit` and `evaluate` under `strategy`; call it after building the model in its scope.

    Keras 3's TF trainer (3.15) has two gaps under MultiWorkerMirroredStrategy, both fixed here
    for this one model and no other strategy: `_maybe_symbolic_build` learns the input shapes
    from the first batch reduced with `strategy.reduce`, which cannot reduce an (inputs, labels)
    pair, so the shapes come from the dataset's element spec instead (which also draws no batch:
    drawing one starts an iterator, and a dataset that reshuffles each iteration would then train
    on its second permutation first); and the step's logs are reduced with
    `strategy.reduce("MEAN", value, axis=0)`, which refuses a scalar, so each scalar leaves the
    step as a vector of one (the mean over replicas of one value each).
    """
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        model._maybe_symbolic_build = functools.partial(_build_from_element_spec, model)
        model.train_step = _logs_as_vectors(model.train_step)
        model.test_step = _logs_as_vectors(model.test_step)
    return model


def _logs_as_vectors(step):
    @functools.wraps(step)
    def wrapped(data):
        return tf.nest.map_structure(lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, step(data))

    return wrapped


def _build_from_element_spec(model: keras.Model, iterator=None, data_batch=None) -> None:
    if iterator is not None:
        data_batch = iterator.data_adapter.get_tf_dataset().element_spec  # shapes and dtypes are all it reads
    with model.distribute_strategy.scope():
        model._symbolic_build(data_batch=data_batch)


def chief_value(strategy: tf.distribute.Strategy, value: int) -> int:
    """The chief's `value` on every worker (and a barrier: no worker returns before all have called it).

    For decisions read from the shared run folder ("is this stage done?"): a worker that read the
    folder a moment later than the chief could otherwise decide differently and leave the others
    waiting in a collective it never joins. Outside a cluster, `value` itself.
    """
    if worker_count(strategy) == 1:
        return int(value)
    # Summed over every replica: the chief's local replicas carry a share each, the others nothing.
    share = float(value) / len(strategy.extended.worker_devices) if is_chief(strategy) else 0.0
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(share, tf.float64)), axis=None)
    return round(float(total))


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Wait until every worker gets here (the chief has written what the others read next)."""
    chief_value(strategy, 0)


def chief_first(strategy: tf.distribute.Strategy, work: Callable[[], T]) -> T:
    """`work()` on the chief, then, once it is done, on every other worker: e.g. building a TFDS folder,
    which several workers building at once would race over and which the others then only open."""
    if is_chief(strategy):
        result = work()
    barrier(strategy)
    if not is_chief(strategy):
        result = work()
    return result
