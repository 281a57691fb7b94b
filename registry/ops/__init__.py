"""Operations on a whole registry, apart from the domain: health checks (`doctor`), garbage
collection (`gc`), archives out and in (`export`, `importer`) and Triton model repositories (`triton`).

Each is one command's worth of work over the domain modules in `registry/`; nothing in the domain
imports from here.
"""
