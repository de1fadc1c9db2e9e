"""Names AMCT's documentation imports from amct_pytorch.common."""
