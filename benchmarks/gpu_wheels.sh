#!/usr/bin/env bash
# Run HERE (the CPU machine, which reaches PyPI) before a device session: fetches into .whl/ the
# Python 3.12 wheels of what benchmarks/gpu_run.sh needs and the device image lacks (it has torch,
# transformers, tokenizers, sentence-transformers, pandas, pyarrow, scikit-learn, pytest, ...:
# /work/.library/device/KINDS.md lists them). Keep the folder out of git and under the 64 MiB that
# travels:   echo /.whl/ >> .git/info/exclude && bash benchmarks/gpu_wheels.sh && du -sh .whl
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-.venv/bin/pip}
[ -x "$PIP" ] || PIP="python3 -m pip"
rm -rf .whl .whl-all && mkdir -p .whl .whl-all
# What the server, the worker and the GPU tests import (the capture's deltalake and the notebook
# side are not needed: nothing there runs in gpu_run.sh).
$PIP download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl-all \
  "mlflow-skinny==3.17.2" "mlflow==3.17.2" "jupyter_server>=2.14,<3" "tornado>=6.4" "traitlets>=5.14" \
  "prometheus_client>=0.20" "psutil>=5.9" "pytest-jupyter[server]>=0.10" "pytest-timeout>=2.3" \
  "nvidia-ml-py>=12.0"
# Drop what the image already holds (one version of each package must be installed there).
present="torch transformers tokenizers sentence_transformers safetensors huggingface_hub hf_xet numpy
pandas pyarrow scipy scikit_learn joblib threadpoolctl pytest pluggy iniconfig packaging pyyaml PyYAML
requests urllib3 idna certifi charset_normalizer jinja2 markupsafe protobuf psutil prometheus_client
nvidia_ml_py cloudpickle click filelock fsspec tqdm regex typing_extensions python_dateutil six pytz
tzdata pillow matplotlib contourpy cycler fonttools kiwisolver pyparsing sympy mpmath networkx
triton setuptools wheel pip attrs pygments rich markdown_it_py mdurl anyio h11 httpx httpcore
sniffio typer shellingham markdown werkzeug grpcio opentelemetry_api zipp importlib_metadata
narwhals tabulate accelerate einops aiohttp aiosignal aiohappyeyeballs frozenlist multidict propcache
yarl absl_py annotated_doc cuda_bindings cuda_core cuda_pathfinder lxml msgpack simplejson wrapt
sortedcontainers xxhash pyre_extensions typing_inspect mypy_extensions portalocker colorama"
for name in $present; do
  find .whl-all -iname "${name}-*.whl" -delete
  find .whl-all -iname "$(echo "$name" | tr _ -)-*.whl" -delete
done
find .whl-all -iname 'nvidia_*' ! -iname 'nvidia_ml_py*' -delete  # CUDA libraries: the image's own
mv .whl-all/*.whl .whl/ && rmdir .whl-all
du -sh .whl && ls .whl | wc -l
