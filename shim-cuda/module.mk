# shim-cuda/module.mk: nothing is built here yet; see shim-cuda/README.md.
