# dynapipe/module.mk: nothing is built here yet; see dynapipe/README.md.
