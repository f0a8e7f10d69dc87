# minuet/module.mk: nothing is built here yet; see minuet/README.md.
