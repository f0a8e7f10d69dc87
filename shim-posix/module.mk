# shim-posix/module.mk: nothing is built here yet; see shim-posix/README.md.
