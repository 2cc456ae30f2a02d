# The wheels of one lock as an image, for offline builds of docker/Dockerfile (WHEELHOUSE arg).
# Built by `invoke wheelhouse` with wheelhouse/VARIANT-PLATFORM as its context.
FROM scratch
COPY . /wheelhouse/
