"""The cone: the risk band and what each engine class may do in it."""
