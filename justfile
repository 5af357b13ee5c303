# pyisolate developer recipes. `just` lists them.
# Uses the virtual environment that ./scripts/bootstrap makes, if present.

python := if path_exists(".venv/bin/python") == "true" { ".venv/bin/python" } else { "python3" }

# List the recipes
default:
    @{{just_executable()}} --justfile {{justfile()}} --list

# Create .venv and install the project, dev tools, CPU torch (if at hand) and bubblewrap
install:
    ./scripts/bootstrap

# Spawn actors, call, stream, crash one, and print a summary
demo:
    {{python}} -m pyisolate demo

# Show this machine's capabilities (sandbox, shared memory, CUDA IPC)
doctor:
    {{python}} -m pyisolate doctor

# Run the test suite
test *args:
    {{python}} -m pytest {{args}}

# Run the quick subset: everything but the tests marked slow
test-fast *args:
    {{python}} -m pytest -m "not slow" {{args}}

# Lint and check formatting
lint:
    {{python}} -m ruff check pyisolate tests examples benchmarks scripts
    {{python}} -m ruff format --check pyisolate tests examples benchmarks scripts

# Type-check the package (mypy --strict)
typecheck:
    {{python}} -m mypy

# Build the user guide and API reference into build/site (warnings are errors)
docs:
    {{python}} -m mkdocs build --strict

# Run the benchmarks and print their tables
bench *args:
    {{python}} -m benchmarks {{args}}

# Everything CI gates on
check: lint typecheck test
