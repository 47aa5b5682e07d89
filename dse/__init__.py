"""cim-dse: design-space exploration for SRAM compute-in-memory DNN accelerators."""

__version__ = "0.1.0"
