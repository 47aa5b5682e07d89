"""The workload: a directed graph of layers and zero-cost ops, in the ONNX model's order."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import networkx as nx

from dse.workload.layer import LOOP_DIMS, Layer, OtherOp, Precision


@dataclass(frozen=True)
class Workload:
    """A DNN as a networkx DiGraph whose nodes are named ``Layer`` or ``OtherOp`` objects.

    Node keys are the unique node names; ``graph.nodes[name]["node"]`` holds the object and
    every edge producer -> consumer carries the connecting ``tensor`` name, so residual
    branches and attention's two activation operands stay visible.
    """

    name: str
    graph: nx.DiGraph
    source: str = ""

    # -- access -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Layer | OtherOp]:
        for key in nx.lexicographical_topological_sort(self.graph, key=self._order_key):
            yield self.graph.nodes[key]["node"]

    def _order_key(self, key: str) -> int:
        return self.graph.nodes[key]["index"]

    def __getitem__(self, name: str) -> Layer | OtherOp:
        return self.graph.nodes[name]["node"]

    def __contains__(self, name: object) -> bool:
        return name in self.graph

    def __len__(self) -> int:
        return self.graph.number_of_nodes()

    @property
    def layers(self) -> list[Layer]:
        """The compute layers, in topological (model) order."""
        return [n for n in self if isinstance(n, Layer)]

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def total_weights(self) -> int:
        return sum(layer.weight_count for layer in self.layers if layer.weight_constant)

    def producers(self, name: str) -> list[str]:
        return sorted(self.graph.predecessors(name), key=self._order_key)

    def consumers(self, name: str) -> list[str]:
        return sorted(self.graph.successors(name), key=self._order_key)

    # -- derived workloads ---------------------------------------------------------------
    def with_precisions(self, precision_of: Callable[[Layer], Precision]) -> Workload:
        """A copy whose compute layers carry ``precision_of(layer)`` (e.g. from a mapping file)."""
        graph = self.graph.copy()
        for key in graph.nodes:
            node = graph.nodes[key]["node"]
            if isinstance(node, Layer):
                graph.nodes[key]["node"] = replace(node, precision=precision_of(node))
        return Workload(name=self.name, graph=graph, source=self.source)

    # -- reports -------------------------------------------------------------------------
    def to_json(self) -> dict:
        """The machine-readable layer table (``cim-dse workload --json``)."""
        return {
            "workload": self.name,
            "source": self.source,
            "layers": [
                {
                    "name": layer.name,
                    "op": layer.op,
                    "onnx_op": layer.onnx_op,
                    "loops": layer.loops.as_dict(),
                    "macs": layer.macs,
                    "weights": layer.weight_count,
                    "weight_constant": layer.weight_constant,
                    "precision": layer.precision.as_dict(),
                    "stride": list(layer.stride),
                    "dilation": list(layer.dilation),
                    "padding": list(layer.padding),
                    "producers": self.producers(layer.name),
                }
                for layer in self.layers
            ],
            "other_ops": sum(1 for n in self if not n.is_compute),
            "total_macs": self.total_macs,
            "total_weights": self.total_weights,
        }

    def table_rows(self) -> list[list[str]]:
        """Rows for a printed table: name, op, the eight loop sizes, MACs, weights, W/I/O bits."""
        rows = []
        for layer in self.layers:
            lp = layer.loops
            p = layer.precision
            rows.append(
                [layer.name, layer.op + ("" if layer.weight_constant else "*")]
                + [str(lp[d]) for d in LOOP_DIMS]
                + [f"{layer.macs:,}", f"{layer.weight_count:,}", f"{p.W}/{p.I}/{p.O}"]
            )
        return rows
