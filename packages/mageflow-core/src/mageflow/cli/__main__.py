from mageflow.cli import console

console()
