"""Answer sets that several metric test modules score."""

YES_NO = ["Yes", "No"]
SKIN = ["BCC", "MEL", "NEV"]

# Genotype calls per candidate: SNPs first, then indels.
GT_TYPES = ["snp"] * 6 + ["indel"] * 3
GT_TRUTH = ["1", "2", "0", "1", "0", "2", "1", "1", "0"]
GT_PRED = ["(B) 1", "1", "1.", "0", "0", "2", "1", "dunno", "??"]
