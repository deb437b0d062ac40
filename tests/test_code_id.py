"""Which facetracks code a process runs (jobs/code_id.py), and an actor that cannot start saying
why in one line (jobs/drive.py `start_failure`)."""
import os
import re
import subprocess
import sys

import pytest
import ray

from facetracks.jobs.code_id import CodeMismatch, code_id
from facetracks.jobs.drive import WorkerStartError, _started
from facetracks.jobs.ray_runner import init_ray
from facetracks.jobs.worker import AnnotateWorker

from .raycluster import other_release


def code_id_of(package_root) -> str:
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    r = subprocess.run([sys.executable, "-c", "import facetracks.jobs.code_id as c, facetracks; "
                        "print(c.code_id(), facetracks.__file__)"], env=env, cwd=package_root,
                       capture_output=True, text=True, timeout=120, check=True)
    ident, where = r.stdout.split()
    assert where.startswith(str(package_root)), where        # the copy was imported, not the install
    return ident


def test_the_same_code_installed_elsewhere_has_the_same_id_and_one_changed_line_another(tmp_path):
    assert code_id_of(other_release(tmp_path / "same", changed=False)) == code_id()
    assert code_id_of(other_release(tmp_path / "next")) != code_id()


def test_a_worker_refuses_other_code_before_it_loads_anything():
    with pytest.raises(CodeMismatch, match=re.escape(f"this node runs facetracks {code_id()}, the driver 0.0.9+0123")):
        AnnotateWorker("no such weights", {}, {}, {}, code="0.0.9+0123456789ab")


class NeedsAModuleThisNodeLacks:
    def __init__(self):
        import facetracks_plugin_not_installed  # noqa: F401

    def device(self) -> str:
        return "cpu"


def test_an_actor_that_cannot_import_says_so_in_one_line():
    init_ray(None)
    a = ray.remote(NeedsAModuleThisNodeLacks).options(num_cpus=0).remote()
    with pytest.raises(WorkerStartError) as e:
        _started(a.device.remote(), 120)
    text = str(e.value)
    assert text.startswith("a worker failed to start on node ") and "\n" not in text and "\x1b" not in text, text
    assert text.endswith("ModuleNotFoundError: No module named 'facetracks_plugin_not_installed'; facetracks "
                         "and its dependencies must be installed on every node"), text
