"""ExecuTorch export: ``torch.export`` → edge dialect → XNNPACK partitioner → ``.pte`` (``executorch.exir``).

The XNNPACK delegate takes the ops it supports (conv, transposed conv, linear, activations, elementwise, int8 QDQ
patterns); what it leaves runs on ExecuTorch's portable kernels. How much was delegated is read from the lowered
program (``harness.compress.executorch_coverage``) and kept with the artifact.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from harness.exporters import package_version
from harness.registry import EXPORTERS


def lower_to_pte(exported: Any, path: str) -> dict[str, Any]:
    """Lower an ``ExportedProgram`` to a .pte file at ``path`` with the XNNPACK partitioner; returns the program's
    coverage (compute ops and weights per precision, share of compute ops delegated)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from harness.compress.executorch_coverage import edge_coverage

    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    coverage = edge_coverage(edge.exported_program())
    program = edge.to_executorch()
    with open(path, "wb") as f:
        program.write_to_file(f)
    return coverage


@EXPORTERS.register("executorch")
class ExecuTorchExporter:
    name = "executorch"
    format = "executorch"
    suffix = ".pte"
    validation_runtime = "executorch"

    @staticmethod
    def tool_versions() -> dict[str, str]:
        # "norm_fold": the harness folds BatchNorm after grouped transposed convs (a cached failure is retried)
        return {p: package_version(p) for p in ("torch", "executorch")} | {"partitioner": "xnnpack",
                                                                            "norm_fold": "grouped-transposed"}

    @staticmethod
    def export(model: Any, inputs: Mapping[str, np.ndarray], path: str) -> dict[str, Any]:
        """Returns ``{"delegation": coverage}`` (kept in the artifact's ``compression``)."""
        import torch

        from harness.exporters.batchnorm_fold import without_grouped_transposed_norms

        args = tuple(torch.from_numpy(a) for a in inputs.values())
        exported = torch.export.export(model.eval(), args)
        folded = without_grouped_transposed_norms(model, exported)  # XNNPACK's own fold of these pairs fails
        if folded is not None:
            exported = torch.export.export(folded, args)
        return {"delegation": lower_to_pte(exported, path)}
