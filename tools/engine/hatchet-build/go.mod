module mageflow.local/hatchetbuild

go 1.26

require github.com/hatchet-dev/hatchet v0.105.0
