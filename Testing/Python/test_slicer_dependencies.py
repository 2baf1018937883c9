"""The Slicer module's package installer (SAMSegSlicerHost/Dependencies.py) on slicer-core's ``slicer.util``, with
pip and the confirmation dialog replaced by recorders: what it asks for, what it installs, and that OpenVINO (the
compiled CPU encoder) is offered and installed as optional -- never a reason to stop a segmentation."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import slicer

MODULE_FOLDER = Path(__file__).resolve().parents[2] / "SAMSegSlicer"


class FakeSlicerPython:
    """Slicer's Python as the installer sees it: which import names are missing, what pip was asked for, what
    the user was asked, and the user's answer."""

    def __init__(self, missing, answer=True, failing=()):
        self.missing, self.answer, self.failing = set(missing), answer, set(failing)
        self.pip, self.questions = [], []

    def find_spec(self, name, *args, real=importlib.util.find_spec):
        return None if name in self.missing else real(name, *args)

    def pip_install(self, requirement):
        self.pip.append(requirement)
        if requirement in self.failing:
            raise RuntimeError("no wheel for this platform")
        self.missing.discard(requirement.split(">")[0].replace("-", "_"))

    def confirm(self, text, title=""):
        self.questions.append(text)
        return self.answer


@pytest.fixture
def dependencies(monkeypatch):
    monkeypatch.syspath_prepend(str(MODULE_FOLDER))
    monkeypatch.delitem(sys.modules, "SAMSegSlicerHost.Dependencies", raising=False)
    from SAMSegSlicerHost import Dependencies

    return Dependencies


@pytest.fixture
def slicer_python(monkeypatch):
    def install(missing, **options):
        fake = FakeSlicerPython(missing, **options)
        monkeypatch.setattr(importlib.util, "find_spec", fake.find_spec)
        monkeypatch.setattr(slicer.util, "pip_install", fake.pip_install)
        monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", fake.confirm)
        return fake
    return install


def test_openvino_is_offered_as_optional_and_installed_with_the_rest(dependencies, slicer_python):
    fake = slicer_python({"timm", "openvino"})
    assert dependencies.missingPythonPackages() == ["timm>=0.9"]
    assert dependencies.missingOptionalPackages() == ["openvino>=2024.0"]
    assert dependencies.installDependencies() == []
    assert fake.pip == ["timm>=0.9", "openvino>=2024.0"]
    question, = fake.questions
    assert "timm>=0.9" in question and "Optional (SAMSeg runs without them)" in question
    assert "openvino>=2024.0: the compiled CPU encoder" in question
    assert dependencies.missingPythonPackages() == [] and dependencies.missingOptionalPackages() == []


def test_an_optional_package_pip_cannot_install_is_a_note_not_an_error(dependencies, slicer_python):
    fake = slicer_python({"openvino"}, failing={"openvino>=2024.0"})
    notes = dependencies.installDependencies(askConfirmation=False)
    assert fake.pip == ["openvino>=2024.0"] and fake.questions == []
    assert len(notes) == 1 and "openvino>=2024.0 was not installed" in notes[0] and "runs without it" in notes[0]


def test_a_missing_optional_package_never_stops_a_segmentation(dependencies, slicer_python):
    fake = slicer_python({"openvino"})
    statuses = []
    assert dependencies.ensureDependencies(statuses.append) is True
    assert fake.pip == [] and fake.questions == [] and statuses == []


def test_declining_only_optional_packages_does_not_say_samseg_cannot_run(dependencies, slicer_python):
    fake = slicer_python({"openvino"}, answer=False)
    with pytest.raises(dependencies.InstallError) as raised:
        dependencies.installDependencies()
    assert str(raised.value) == "installation of Python packages cancelled" and fake.pip == []
    slicer_python({"openvino", "timm"}, answer=False)
    with pytest.raises(dependencies.InstallError, match="SAMSeg cannot run without them"):
        dependencies.installDependencies()
