"""The package's one-way layering: a module imports only from layers below its own (function-level
imports included), so no import runs back up."""

import ast
import os

import keras_interp

# Lowest first; modules in one layer do not import each other across the layer either way.
LAYERS = [
    {"compat", "tags", "registry", "images", "datasets", "jobs"},
    {"graph"},
    {"checks", "targets", "tokens"},
    {"layers", "summary"},
    {"explainers", "models"},
    {"metrics", "search", "visualize"},
    {"logger"},
    {"callbacks", "evaluation"},
    {"cli", "__main__", "__init__"},
]


def _imports():
    """{top-level module: {top-level modules of keras_interp it imports}}."""
    root = os.path.dirname(keras_interp.__file__)
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            top = parts[0]
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "keras_interp":
                    modules = ([f"keras_interp.{a.name}" for a in node.names] if node.module == "keras_interp"
                               else [node.module])
                elif isinstance(node, ast.Import):
                    modules = [a.name for a in node.names if a.name.split(".")[0] == "keras_interp"]
                else:
                    continue
                for module in modules:
                    target = module.split(".")[1] if "." in module else None
                    if target and target != top and not target.startswith("__version"):
                        found.setdefault(top, set()).add(target)
    return found


def test_no_module_imports_one_above_it():
    level = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    upward = []
    for module, targets in _imports().items():
        assert module in level, f"keras_interp.{module} is in no layer: add it to LAYERS"
        for target in targets:
            assert target in level, f"keras_interp.{target} is in no layer: add it to LAYERS"
            if level[target] >= level[module] and module not in ("__init__", "__main__"):
                upward.append(f"{module} -> {target}")
    assert not upward, f"imports that run up (or across) the layering: {upward}"


def test_the_readme_lists_every_method_of_the_registry():
    from keras_interp import registry

    readme = open(os.path.join(os.path.dirname(os.path.dirname(keras_interp.__file__)), "README.md"),
                  encoding="utf-8").read()
    table = readme[readme.index("## Methods"):readme.index("## More")]
    missing = [f"{m.name} ({m.cls})" for m in registry.METHODS.values()
               if f"`{m.name}`" not in table or f"`ki.{m.cls}`" not in table]
    assert not missing, f"README's methods table lacks {missing}"
