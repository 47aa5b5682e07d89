"""The accuracy side of a design point: which macro fields can change it (the cache key), and the evaluator.

The simulator is slow, and most design parameters (macro count, columns, memories, technology,
clock) cannot change what it computes, so its results are cached by the fields that can: rows per
conversion, ADC bits, weight and input bits, input bits per cycle, and the non-idealities (noise,
non-linearity, hybrid levels, votes, PAC, device variation), plus the model, data set and seeds.
A digital macro adds exact integer partial sums, so for it only the precisions and non-idealities count.

An evaluator is any picklable callable ``fn(accelerator, settings) -> float | dict | result`` (a result
object with ``accuracy`` and optionally ``accuracy_std``, ``float_accuracy``, ``samples``); it may carry
an ``accuracy_key(macro) -> dict`` method, else :func:`accuracy_fields` is its key. The default,
:class:`SimulatorAccuracy`, runs ``dse.accuracy.simulate.simulate_accuracy`` and uses its ``accuracy_key``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

from dse.hardware import Accelerator, Macro

ANALOG_FIELDS = ("kind", "rows", "weight_bits", "input_bits", "input_bits_per_cycle", "adc_bits",
                 "circuit.rows_active", "circuit.adc_input_rows")
DIGITAL_FIELDS = ("kind", "weight_bits", "input_bits")


@dataclass(frozen=True)
class AccuracySettings:
    """What every accuracy run of an exploration shares (from the space's ``workload:`` section)."""

    model: str  # ONNX model path
    model_sha: str
    dataset: str = "digits"
    data_path: str | None = None
    samples: int | None = None
    repeats: int = 1
    seed: int = 0
    threads: int | None = None  # torch threads per worker (None: leave as is)
    finetune_epochs: int = 0  # hardware-aware fine-tuning per design before simulating (0: none)
    finetune_lr: float = 1e-3


class AccuracyFn(Protocol):
    def __call__(self, accelerator: Accelerator, settings: AccuracySettings) -> Any: ...


def accuracy_fields(macro: Macro) -> dict:
    """The macro fields that can change a simulated accuracy, as plain JSON-able data.

    Conversion noise is normalised to % of full scale, so the same noise given in LSB or in % is one key.
    """
    fields = ANALOG_FIELDS if macro.kind == "analog" else DIGITAL_FIELDS
    out: dict[str, Any] = {}
    for path in fields:
        node: Any = macro
        for part in path.split("."):
            node = getattr(node, part)
        out[path] = node
    figures = asdict(macro.accuracy)
    figures.pop("noise_sigma_lsb")
    figures["noise_sigma_pct"] = macro.noise_sigma_pct_of_fs
    out["accuracy"] = figures
    return out


def evaluator_name(fn: Any) -> str:
    """A stable name of an evaluator (module and qualified name), part of every cache key."""
    while hasattr(fn, "func") and not hasattr(fn, "__qualname__"):  # functools.partial
        fn = fn.func
    target = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{target.__module__}:{target.__qualname__}"


def key_of(fn: Any, macro: Macro) -> dict:
    """The evaluator's own key of a macro, or :func:`accuracy_fields`."""
    custom = getattr(fn, "accuracy_key", None)
    return custom(macro) if callable(custom) else accuracy_fields(macro)


def normalise(result: Any) -> dict:
    """An evaluator's answer as {accuracy, accuracy_std, float_accuracy, accuracy_samples}."""
    if isinstance(result, int | float):
        return {"accuracy": float(result)}
    get = result.get if isinstance(result, dict) else (lambda k, d=None: getattr(result, k, d))
    out = {"accuracy": float(get("accuracy"))}
    for src, dst in (("accuracy_std", "accuracy_std"), ("float_accuracy", "float_accuracy"),
                     ("samples", "accuracy_samples")):
        value = get(src, None)
        if value is not None:
            out[dst] = value
    return out


class SimulatorAccuracy:
    """The bit-wise simulator of ``dse.accuracy`` as an evaluator (imported only when first used)."""

    def __call__(self, accelerator: Accelerator, settings: AccuracySettings) -> Any:
        from dse.accuracy.simulate import simulate_accuracy

        if settings.threads:
            import torch

            torch.set_num_threads(settings.threads)
        if not settings.finetune_epochs:
            return simulate_accuracy(settings.model, accelerator, dataset=settings.dataset,
                                     data_path=settings.data_path, samples=settings.samples, repeats=settings.repeats,
                                     seed=settings.seed)
        import tempfile

        from dse.accuracy.train import train

        with tempfile.TemporaryDirectory(prefix="cim-dse-finetune-") as tmp:  # the weights are not kept
            trained = train(settings.model, accelerator, dataset=settings.dataset, data_path=settings.data_path,
                            epochs=settings.finetune_epochs, lr=settings.finetune_lr, seed=settings.seed,
                            macro_noise=True, output=tmp)
            return simulate_accuracy(settings.model, accelerator, dataset=settings.dataset,
                                     data_path=settings.data_path, samples=settings.samples, repeats=settings.repeats,
                                     seed=settings.seed, checkpoint=trained.checkpoint)

    def accuracy_key(self, macro: Macro) -> dict:
        from dse.accuracy.simulate import accuracy_key

        return accuracy_key(macro)
