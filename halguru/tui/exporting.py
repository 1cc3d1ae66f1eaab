"""Export (Ctrl+S) of the open run in the debugger, as a mixin of ``DevApp``: its trace as JSON and a conversation
test made from it, as `halguru logs export` writes them."""

from __future__ import annotations

import json
from pathlib import Path

from halguru.agents.replay import load_run, run_export
from halguru.errors import HalguruError
from halguru.printable import printable
from halguru.tui.rerunning import RerunActions


class ExportActions(RerunActions):
    """Write the open run's export into ``export_dir``; a test already there is kept."""

    export_dir: Path  # set by DevApp

    def action_export(self) -> None:
        if self.stored is None:
            self.notify("no run to export yet", severity="warning")
            return
        if self.run_worker_ is not None and self.run_worker_.is_running and self.stored.events is self.last_events:
            self.notify(f"{self.stored.id} has not finished: export it once it has (F5 continues a paused run)",
                        severity="warning")
            return
        from halguru.atomic import write_atomically
        from halguru.testing.export import run_to_test_yaml

        try:
            stored = load_run(self.store, self.stored.id)
        except HalguruError as exc:  # deleted meanwhile (`halguru logs prune`): said, the debugger goes on
            self.notify(str(exc), severity="error")
            return
        json_path = self.export_dir / f"{stored.id}.json"
        test_path = self.export_dir / f"{stored.id}.test.yaml"
        if test_path.exists():  # a test you may have edited is kept, as `halguru logs export` keeps it
            self.notify(f"{printable(str(test_path))} exists already: kept, nothing exported (rename or delete it "
                        "to export again)", severity="warning")
            return
        try:
            if not self.export_dir.is_dir():  # not created: a folder gone from under the debugger is a mistake
                raise FileNotFoundError(2, "No such file or directory (the folder does not exist)")
            write_atomically(json_path, json.dumps(run_export(stored), indent=2, ensure_ascii=False))
            write_atomically(test_path, run_to_test_yaml(self.store, stored.id))
        except OSError as exc:  # a folder gone or read-only: said, the debugger goes on
            self.notify(f"cannot export to {printable(str(self.export_dir))}: {exc.strerror or exc}",
                        severity="error")
            return
        self.notify(f"exported {json_path.name} and {test_path.name} to {self.export_dir}")
