"""A suite across a device lab scheduled by Ray (``harness run --cluster ADDRESS``).

This process stays the one writer of the run's results store (append-only, fsynced, resumable); Ray places the
work and carries requests, results and files:

- **Lanes.** Each device is a unit of the custom resource ``edge-target:<target>`` (``harness.launch.cluster``). A
  lane is a Ray actor holding one unit for its whole life, on the node that reaches the device, so one
  measurement runs per device at a time while devices measure in parallel. Here, one thread per lane takes the
  next job of its target and measures it as named steps (``harness.run.job``) with a launcher whose passes run
  in that actor. Each record says which node, lane and board measured it, and when.
- **Build work fans out.** Each model's prepare step (training, compression, calibration, export, references) is
  a Ray task on a node declaring ``edge-build``, all models at once (none: here, one after another). Artifacts stay
  content-addressed: a build node writes into its own cache and this process copies the cache folders its result
  names that it lacks (``read_files`` on that node: only what is missing, verified by size), so the driver holds
  every file a record refers to and nodes need no shared filesystem. Lanes get the files a request names through
  Ray's object store, put once per file here and fetched by a node only if its stage lacks that sha256. On a
  build node as here, the prepare child runs under the memory cap and the time limit per variant step, and a
  variant that runs away fails alone, named (``harness.launch.preparing.prepare_isolating``).
- **Faults.** A node that dies or stops answering ends its lanes; a job it was measuring is measured once more on
  another lane of the same target (``retry``), else recorded ``unreachable`` naming the node. A target with no
  lane left has its remaining jobs recorded ``unreachable``. Ctrl-C kills the lab's actors and tasks and keeps
  every record written; ``--resume`` completes the run without duplicates.
- **Refusals before any job**: no cluster at the address, a node running another harness code or Python, a suite
  target that no node declares, one SSH board reached by two lanes (two nodes declaring it, or two targets naming
  it): they would measure it at once.

``lab.jsonl`` in the run folder gets one line per session: the lanes (node, board, CPUs), each prepare step's
node and span, and the makespan; the report draws the lanes' timelines from it and the records.
"""
from __future__ import annotations

from harness.run.lab.lanes import LaneLauncher, LaneState
from harness.run.lab.nodes import refuse_shared_boards
from harness.run.lab.scheduler import LAB_FILE, LabRunner
from harness.run.lab.transport import rebase_paths

__all__ = ["LAB_FILE", "LabRunner", "LaneLauncher", "LaneState", "rebase_paths", "refuse_shared_boards"]
