"""The prunable weights of ELECTRA (Clark et al. 2020): its encoder layers name their Linears as BERT's do."""

from bench.core.prunable import BERT_ROLES, Architecture

ELECTRA = Architecture("electra", r"encoder\.layer\.(\d+)\.", BERT_ROLES)
