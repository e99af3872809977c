# hsu-geo runtime image: the package, its dependencies and the pipeline presets.
# ENTRYPOINT is the CLI:  docker run --rm -v "$PWD:/data" hsu-geo batch scenes/ -o out/
#
# The install mirrors CI (.ci/run): the torch wheel first, from the CPU index so pip does not
# pull a multi-GB CUDA build, then the package. rasterio's wheel bundles GDAL/PROJ, so no
# system GDAL is needed.
#
# CPU image (default):
#   docker build -t hsu-geo .
# CUDA image: the same Dockerfile with a CUDA build of torch (pick the index of your driver's
# CUDA version from pytorch.org; run with the NVIDIA Container Toolkit: docker run --gpus all):
#   docker build -t hsu-geo:cuda --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# A dask worker from the same image (see docs/cluster.md):
#   docker run --rm --network host --entrypoint dask hsu-geo worker tcp://scheduler:8786
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg

WORKDIR /opt/hsu-geo
COPY pyproject.toml README.md ./
COPY hsu_geo ./hsu_geo
COPY pipelines ./pipelines

RUN python -m pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
 && python -m pip install . \
 && useradd --create-home --uid 1000 hsu \
 && hsu-geo --version

USER hsu
WORKDIR /data
ENTRYPOINT ["hsu-geo"]
CMD ["--help"]
