# The second, short step of `invoke build`: the image it built, labelled dllab.venv-tree with the
# hash of its venv tree. No step of a build can put a value it computes into a label of its own
# image, so this builds FROM that image, by ID, adding the label and no layer (dllab.provenance).
ARG IMAGE
FROM ${IMAGE}
ARG VENV_TREE
LABEL dllab.venv-tree="${VENV_TREE}"
