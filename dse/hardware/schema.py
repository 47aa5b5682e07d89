"""The accelerator description: technology, one IMC macro type, memory levels, reported figures.

These frozen pydantic dataclasses are both the YAML schema (unknown fields are refused, every
field has a unit and a documented default) and the domain objects the models consume. The
loader in ``dse.hardware.loader`` turns validation failures into one-line ``InputError``s.

Array dimensions follow ZigZag-IMC: D1 = columns (wordline direction: outputs, an input is
broadcast along it), D2 = rows (bitline direction: summed into one column), D3 = macros.
Memory operands are ZigZag's: I1 = activations in, I2 = weights (stored operand), O = outputs.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

from dse.errors import FieldProblem

ARRAY_DIMS: tuple[str, ...] = ("D1", "D2", "D3")
MEMORY_OPERANDS: tuple[str, ...] = ("I1", "I2", "O")
OPERAND_MEANING = {"I1": "activations in", "I2": "weights", "O": "outputs"}

_STRICT = ConfigDict(extra="forbid")


@dataclass(frozen=True, config=_STRICT)
class Technology:
    """Process node and supply voltage; the cost model scales its 28 nm / 0.9 V constants by these."""

    node_nm: float = Field(28.0, gt=0, description="process node in nm")
    vdd_V: float = Field(0.9, gt=0, description="supply voltage in V")


@dataclass(frozen=True, config=_STRICT)
class Activity:
    """Switching activity the energy model assumes (per layer: the mapping file, or `--activity measured`)."""

    input_toggle_rate: float = Field(
        0.5, ge=0, le=1, description="fraction of input bits that toggle from one cycle to the next"
    )
    weight_sparsity: float = Field(0.5, ge=0, le=1, description="fraction of stored weight bits that are 0")


@dataclass(frozen=True, config=_STRICT)
class Circuit:
    """Circuit details of a macro beyond the array parameters (used to calibrate on real chips)."""

    dac_bits: int | None = Field(
        None, ge=0, description="DAC resolution in bits; default: input_bits_per_cycle for an analog "
        "macro driving more than 1 bit per cycle, else 0 (no DAC); a narrower DAC applies each cycle's input slice in "
        "ceil(input_bits_per_cycle / dac_bits) steps"
    )
    rows_active: int | None = Field(
        None, gt=0, description="rows summed per conversion when fewer than the physical rows (default: rows)"
    )
    pipelined: bool = Field(False, description="datapath pipelined: clock = slowest stage, not the whole path")
    column_mux: int = Field(1, gt=0, description="columns sharing one ADC / adder tree (time-multiplexed); their cells "
                            "count in the area, the mapper uses the weights of the active columns only")
    adder_input_bits: int | None = Field(None, gt=0, description="adder-tree input width in bits, if not derived")
    accumulator_bits: int | None = Field(None, gt=0, description="accumulator width in bits, if not derived")
    output_bits: int | None = Field(None, gt=0, description="macro output width in bits, if not derived")
    adder_trees: Literal["per_input_bit", "per_weight_bit", "booth"] = Field(
        "per_input_bit", description="digital column organisation: per_input_bit = one tree per input bit of the "
        "cycle, summing 1b x weight_bits products (ZigZag-IMC); per_weight_bit = one tree per weight bit (bit-parallel "
        "weight columns), summing input_bits_per_cycle x 1b products, joined by a place-value tree; booth = one tree "
        "of radix-4 Booth partial products (weight_bits + 1 wide), 2 input bits per cycle"
    )
    adc_physical_bits: int | None = Field(
        None, gt=0, le=16, description="resolution the ADC is built for (its area), when conversions stop early at "
        "adc_bits (LSB-first, early-stop ADCs); default adc_bits"
    )
    adc_adder_bits: int | None = Field(
        None, gt=0, le=32, description="width of a ripple adder that follows each ADC in its pipeline stage (e.g. "
        "combining an LSB-first ADC's partial codes); priced in the ADC's delay, energy and area; default none"
    )
    adc_input_rows: int | None = Field(
        None, gt=0, description="bitline rows the ADC input settles (its delay); capacitive coupling presents a "
        "smaller node; default: rows per conversion"
    )


@dataclass(frozen=True, config=_STRICT)
class DeviceVariation:
    """NVM device variation and write-verify (SWIM): Gaussian weight noise relative to max|W|."""

    dev_var: float = Field(0.1, ge=0, description="relative sigma of a weight that is not write-verified")
    write_var: float = Field(0.03, ge=0, description="relative sigma of a write-verified weight")
    bits_per_device: int = Field(1, gt=0, description="bits stored per device (m)")
    write_verify_energy_pJ: float = Field(0.0, ge=0, description="extra energy to write-verify one weight, pJ")
    write_verify_time_ns: float = Field(0.0, ge=0, description="extra time to write-verify one weight, ns")
    verify_fraction: float = Field(0.0, ge=0, le=1, description="fraction of the weights write-verified (SWIM's "
                                   "selective write-verify); priced by the cost model, simulated by the accuracy model")
    verify_method: Literal["sm", "second", "magnitude", "saliency", "random"] = Field(
        "sm", description="which weights are verified: sm/second/saliency rank by second-derivative sensitivity, "
        "magnitude by |w|, random at random"
    )


@dataclass(frozen=True, config=_STRICT)
class AccuracyFigures:
    """Non-idealities the accuracy simulator reproduces; all zero = an ideal macro."""

    noise_sigma_pct: float | None = Field(
        None, ge=0, description="random conversion noise, sigma in % of the ADC full scale (default 0)"
    )
    noise_sigma_lsb: float | None = Field(
        None, ge=0, description="the same noise in ADC LSB (1 LSB = 100/(2^adc_bits-1) %); give one of the two"
    )
    nonlinear_sigma_pct: float = Field(
        0.0, ge=0, description="signal-dependent noise in % of full scale, scaled by 1/sqrt(MAC+1)"
    )
    hybrid_levels: int = Field(0, ge=0, description="most significant (weight bit, input bit) anti-diagonals "
                               "computed digitally (HCiM)")
    votes: int = Field(1, gt=0, description="conversions per voted cycle; the mode of the codes is kept")
    voting_levels: int = Field(0, ge=0, description="most significant anti-diagonals that are voted")
    pac_operand: int | None = Field(
        None, gt=0, description="PAC: bits of weight and input computed exactly; other cycles approximated"
    )
    device_variation: DeviceVariation | None = Field(None, description="NVM device variation (SWIM)")

    @model_validator(mode="after")
    def _one_noise_unit(self) -> AccuracyFigures:
        if self.noise_sigma_pct is not None and self.noise_sigma_lsb is not None:
            raise FieldProblem("noise_sigma_lsb", "give the noise in % of full scale or in LSB, not both")
        return self


@dataclass(frozen=True, config=_STRICT)
class Macro:
    """One IMC macro type (``count`` identical copies)."""

    kind: Literal["analog", "digital"] = Field(description="analog (ADC per column) or digital (adder trees)")
    rows: int = Field(gt=0, description="rows summed into one column (bitline direction, D2)")
    columns: int = Field(gt=0, description="output columns (wordline direction, D1)")
    count: int = Field(1, gt=0, description="number of macros (D3)")
    weight_bits: int = Field(8, gt=0, le=32, description="bits per stored weight")
    input_bits: int = Field(8, gt=0, le=32, description="bits per input activation")
    input_bits_per_cycle: int = Field(1, gt=0, description="input bits applied per cycle (bit-serial = 1)")
    adc_bits: int | None = Field(None, gt=0, le=16, description="ADC resolution in bits (analog only)")
    cells_per_group: int = Field(1, gt=0, description="weights per cell group sharing one compute unit (M)")
    cell_write_energy_pJ: float | None = Field(
        None, ge=0, description="energy to write one weight into the cells, pJ (default: modelled)"
    )
    cell_group_area_um2: float | None = Field(
        None, ge=0, description="area of one cell group, um^2 (default: from cell_transistors, else an SRAM array "
        "estimate)"
    )
    cell_transistors: int | None = Field(
        None, gt=0, description="transistors per stored weight, compute included (e.g. 8T/10T/18T compute cells); "
        "sets the cell area and puts the multiplier inside the cell"
    )
    leakage_mW: float = Field(0.0, ge=0, description="static power of one macro, mW (added per cycle: mW x ns = pJ)")
    activity: Activity = Field(default_factory=Activity, description="default switching activity")
    circuit: Circuit = Field(default_factory=Circuit, description="circuit details")
    accuracy: AccuracyFigures = Field(default_factory=AccuracyFigures, description="non-idealities")

    @model_validator(mode="after")
    def _consistent(self) -> Macro:
        if self.kind == "digital" and self.rows & (self.rows - 1):
            low = 1 << (self.rows.bit_length() - 1)
            raise FieldProblem(
                "rows", f"= {self.rows}: a digital macro's adder tree needs a power of two ({low} or {low * 2})"
            )
        if self.kind == "analog" and self.adc_bits is None:
            raise FieldProblem("adc_bits", "missing: an analog macro needs its ADC resolution in bits")
        if self.kind == "digital" and self.adc_bits is not None:
            raise FieldProblem(
                "adc_bits", f"= {self.adc_bits}: a digital macro has no ADC; remove the field or set kind: analog"
            )
        if self.input_bits % self.input_bits_per_cycle:
            divisors = [d for d in range(1, self.input_bits + 1) if self.input_bits % d == 0]
            listed = ", ".join(map(str, divisors[:-1])) + f" or {divisors[-1]}" if len(divisors) > 1 else "1"
            raise FieldProblem(
                "input_bits_per_cycle",
                f"= {self.input_bits_per_cycle}: must divide macro.input_bits = {self.input_bits} ({listed})",
            )
        if self.circuit.rows_active is not None and self.circuit.rows_active > self.rows:
            raise FieldProblem(
                "circuit.rows_active", f"= {self.circuit.rows_active}: must be <= macro.rows = {self.rows}"
            )
        acc = self.accuracy
        if acc.noise_sigma_lsb is not None and self.adc_bits is None:
            raise FieldProblem("accuracy.noise_sigma_lsb", "needs an ADC (adc_bits); give noise_sigma_pct instead")
        for name in ("hybrid_levels", "voting_levels"):
            if getattr(acc, name) > self.weight_bits + self.cycles_per_mac - 1:
                raise FieldProblem(
                    f"accuracy.{name}",
                    f"= {getattr(acc, name)}: at most weight_bits + input cycles - 1 = "
                    f"{self.weight_bits + self.cycles_per_mac - 1} anti-diagonals exist",
                )
        if acc.pac_operand is not None and acc.pac_operand > min(self.weight_bits, self.input_bits):
            raise FieldProblem(
                "accuracy.pac_operand",
                f"= {acc.pac_operand}: must be <= min(weight_bits, input_bits) = "
                f"{min(self.weight_bits, self.input_bits)}",
            )
        return self

    # -- derived values ------------------------------------------------------------------
    @property
    def cycles_per_mac(self) -> int:
        """Input cycles per full-precision MAC (S = input_bits / input_bits_per_cycle)."""
        return self.input_bits // self.input_bits_per_cycle

    @property
    def rows_per_conversion(self) -> int:
        return self.circuit.rows_active or self.rows

    @property
    def dac_bits(self) -> int:
        if self.circuit.dac_bits is not None:
            return self.circuit.dac_bits
        return self.input_bits_per_cycle if self.kind == "analog" and self.input_bits_per_cycle > 1 else 0

    @property
    def weights_stored(self) -> int:
        """Weights held in all macros (cell groups x weights per group)."""
        return self.rows * self.columns * self.count * self.cells_per_group

    @property
    def macs_per_cycle(self) -> float:
        """Peak full-precision MACs per clock cycle over all macros."""
        return self.rows_per_conversion * self.columns * self.count / self.cycles_per_mac

    @property
    def noise_sigma_pct_of_fs(self) -> float:
        """Conversion noise in % of full scale, whichever unit the file used."""
        acc = self.accuracy
        if acc.noise_sigma_lsb is not None and self.adc_bits is not None:
            return acc.noise_sigma_lsb * 100.0 / (2**self.adc_bits - 1)
        return acc.noise_sigma_pct or 0.0


@dataclass(frozen=True, config=_STRICT)
class Ports:
    """Number of ports of a memory by kind."""

    read: int = Field(0, ge=0, description="read-only ports")
    write: int = Field(0, ge=0, description="write-only ports")
    read_write: int = Field(0, ge=0, description="shared read/write ports")

    @model_validator(mode="after")
    def _some_port(self) -> Ports:
        if self.read + self.write + self.read_write == 0:
            raise FieldProblem("read_write", "a memory needs at least one port")
        if self.read_write == 0 and (self.read == 0 or self.write == 0):
            raise FieldProblem("read" if self.read == 0 else "write",
                               "= 0: without read_write ports a memory needs both read and write ports")
        return self


@dataclass(frozen=True, config=_STRICT)
class Memory:
    """One memory level above the macro cells (registers, SRAM buffers, DRAM)."""

    name: str = Field(min_length=1, description="unique level name")
    size_bits: int = Field(gt=0, description="capacity in bits (per instance)")
    operands: tuple[Literal["I1", "I2", "O"], ...] = Field(
        description="memory operands held: I1 activations in, I2 weights, O outputs/partial sums"
    )
    word_bits: int = Field(gt=0, description="bits per access at full bandwidth (port width)")
    min_word_bits: int | None = Field(
        None, gt=0, description="smallest access in bits; smaller accesses cost a fraction (default word_bits)"
    )
    read_energy_pJ: float | None = Field(None, ge=0, description="energy per full-width read, pJ (default: "
                                         "estimated from size and width)")
    write_energy_pJ: float | None = Field(None, ge=0, description="energy per full-width write, pJ")
    kind: Literal["register", "sram", "dram"] = Field("sram", description="technology of the level")
    ports: Ports = Field(default_factory=lambda: Ports(read_write=1), description="ports by kind")
    served_dimensions: tuple[Literal["D1", "D2", "D3"], ...] = Field(
        ARRAY_DIMS, description="array dims one instance is shared over ([] = one instance per cell)"
    )
    area_mm2: float | None = Field(None, ge=0, description="area of all instances, mm^2 (default: estimated)")
    leakage_mW: float | None = Field(None, ge=0, description="static power of all instances, mW (default: estimated)")
    latency_cycles: int = Field(1, ge=0, description="access latency in cycles")
    double_buffered: bool = Field(False, description="reserve half the capacity for prefetching")

    @model_validator(mode="after")
    def _consistent(self) -> Memory:
        if not self.operands:
            raise FieldProblem("operands", "empty: a memory level must hold at least one of I1, I2, O")
        if len(set(self.operands)) != len(self.operands):
            raise FieldProblem("operands", f"= {list(self.operands)}: an operand is listed twice")
        if len(set(self.served_dimensions)) != len(self.served_dimensions):
            raise FieldProblem("served_dimensions", f"= {list(self.served_dimensions)}: a dimension is listed twice")
        if self.min_word_bits is not None and self.min_word_bits > self.word_bits:
            raise FieldProblem(
                "min_word_bits", f"= {self.min_word_bits}: must be <= word_bits = {self.word_bits}"
            )
        if self.word_bits > self.size_bits:
            raise FieldProblem("word_bits", f"= {self.word_bits}: wider than the memory (size_bits = {self.size_bits})")
        return self


def _first_problem(err: ValueError) -> str:
    """'field = value: reason' of the first failure of a nested validation (pydantic or FieldProblem)."""
    errors = getattr(err, "errors", None)
    if not callable(errors):
        return str(err)
    first = errors()[0]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, FieldProblem):
        sep = " " if cause.message.startswith("= ") else ": "
        return f"macro.{cause.field}{sep}{cause.message}"
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first['msg']}" if where else first["msg"]


@dataclass(frozen=True, config=_STRICT)
class Conditions:
    """Macro settings during a reported measurement where they differ from the YAML's macro.

    A chip whose figures were measured in another precision mode (DIMC4's TOP/s/W is an INT4 figure) or
    at another supply is compared with the model in that mode; the accelerator itself is unchanged.
    """

    weight_bits: int | None = Field(None, gt=0, le=32, description="bits per weight during the measurement")
    input_bits: int | None = Field(None, gt=0, le=32, description="bits per input during the measurement")
    input_bits_per_cycle: int | None = Field(None, gt=0, description="input bits per cycle during the measurement")
    columns: int | None = Field(None, gt=0, description="output columns in that mode (e.g. twice as many at half "
                                "the weight bits on the same array)")
    vdd_V: float | None = Field(None, gt=0, description="supply during the measurement, V")


@dataclass(frozen=True, config=_STRICT)
class Reported:
    """Figures measured on a fabricated chip, with where they come from and the conditions."""

    source: str = Field(min_length=1, description="paper: venue, title or IEEE document number")
    clock_ns: float | None = Field(None, gt=0, description="reported clock period, ns")
    area_mm2: float | None = Field(None, gt=0, description="reported macro area, mm^2")
    tops_per_w: float | None = Field(None, gt=0, description="reported energy efficiency, TOP/s/W (1 MAC = 2 ops)")
    tops: float | None = Field(None, gt=0, description="reported or derived peak throughput, TOP/s")
    tops_per_mm2: float | None = Field(None, gt=0, description="reported or derived TOP/s/mm^2")
    input_toggle_rate: float | None = Field(None, ge=0, le=1, description="input toggle rate of the measurement")
    weight_sparsity: float | None = Field(None, ge=0, le=1, description="weight sparsity of the measurement")
    conditions: Conditions | None = Field(None, description="macro settings of the measurement where they differ "
                                          "from the macro's; validate-chips models the figures in that mode")
    notes: str = Field("", description="what the figures include, caveats")


@dataclass(frozen=True, config=_STRICT)
class Accelerator:
    """An IMC accelerator: technology, macro(s), memory levels (lowest first), clock."""

    name: str = Field(min_length=1, description="accelerator name")
    macro: Macro = Field(description="the IMC macro type")
    technology: Technology = Field(default_factory=Technology, description="process node and supply")
    memories: tuple[Memory, ...] = Field((), description="memory levels above the cells, lowest first")
    clock_ns: float | None = Field(None, gt=0, description="clock period, ns (default: the modelled critical path)")
    description: str = Field("", description="one line for tables and plots")
    reported: Reported | None = Field(None, description="measured chip figures, for calibration")

    @model_validator(mode="after")
    def _consistent(self) -> Accelerator:
        names = [m.name for m in self.memories]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise FieldProblem(f"memories[{i}].name", f"= '{name}': a level with this name comes earlier")
        if self.memories:
            held = {op for m in self.memories for op in m.operands}
            for op in MEMORY_OPERANDS:
                if op not in held:
                    raise FieldProblem(
                        "memories",
                        f"no level holds operand {op} ({OPERAND_MEANING[op]}); add it to the outermost level",
                    )
        if self.reported is not None and self.reported.conditions is not None:
            try:
                self.measured()
            except ValueError as err:  # pydantic's ValidationError is a ValueError
                raise FieldProblem("reported.conditions",
                                   f"describe a macro that cannot exist: {_first_problem(err)}") from None
        return self

    def measured(self) -> tuple[Macro, Technology]:
        """The macro and technology of the reported measurement (``reported.conditions`` applied)."""
        cond = self.reported.conditions if self.reported is not None else None
        if cond is None:
            return self.macro, self.technology
        fields = ("weight_bits", "input_bits", "input_bits_per_cycle", "columns")
        changes = {f: getattr(cond, f) for f in fields if getattr(cond, f) is not None}
        macro = dataclasses.replace(self.macro, **changes) if changes else self.macro
        tech = self.technology if cond.vdd_V is None else dataclasses.replace(self.technology, vdd_V=cond.vdd_V)
        return macro, tech

    def memory(self, name: str) -> Memory:
        for m in self.memories:
            if m.name == name:
                return m
        raise KeyError(name)

    def levels_of(self, operand: str) -> list[Memory]:
        """The levels holding ``operand`` (I1, I2 or O), lowest first."""
        return [m for m in self.memories if operand in m.operands]
