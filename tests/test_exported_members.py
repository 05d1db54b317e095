import subprocess
import sys
import types

import llamakit


def test_all_is_sorted_and_lists_every_public_name() -> None:
    assert llamakit.__all__ == sorted(llamakit.__all__)
    defined = {
        name
        for name, value in vars(llamakit).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    # Names bound eagerly (the errors) plus the lazily loaded ones are exactly __all__.
    assert defined | set(llamakit._LAZY) | {"__version__"} == set(llamakit.__all__)


def test_every_public_name_resolves_to_its_module() -> None:
    for name in llamakit.__all__:
        value = getattr(llamakit, name)
        assert value is not None, name
        if name in llamakit._LAZY and hasattr(value, "__module__"):
            assert value.__module__.startswith("llamakit"), name


def test_import_stays_light() -> None:
    code = (
        "import sys, llamakit; heavy = {'pandas', 'matplotlib', 'ipywidgets', 'starlette', "
        "'uvicorn', 'llama_cpp', 'tiktoken', 'numpy'} & set(sys.modules); print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_submodules_load_on_attribute_access() -> None:
    code = (
        "import sys, llamakit as lk; assert 'llamakit.scoring' not in sys.modules; "
        "print(lk.scoring.contains().name, lk.tokens.count('tell me a joke on cats'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["contains", "6"]


def test_stop_rules_load_on_attribute_access() -> None:
    code = (
        "import sys, llamakit as lk; assert 'llamakit.experiment.stop' not in sys.modules; "
        "print(lk.stop.compare('a', 'b', 'exact').key()['rule'], lk.stop.best('exact').metric)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["compare", "exact"]


def test_run_comparison_names_are_public() -> None:
    # Issue 18: comparing runs, the regression gate and its error are top-level names.
    for name in ("compare", "check_no_regression", "RegressionError"):
        assert name in llamakit.__all__, name
    assert llamakit.compare.__module__ == "llamakit.experiment.compare"
    assert issubclass(llamakit.RegressionError, llamakit.LlamakitError)
    assert issubclass(llamakit.RegressionError, AssertionError)  # pytest shows a failed check
