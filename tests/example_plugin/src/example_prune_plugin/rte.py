"""``rte``: GLUE RTE (Recognizing Textual Entailment), built on prune-bench's GLUE task."""

from tasks.glue import GlueTask


class RTE(GlueTask):
    """Recognizing Textual Entailment: does sentence 1 entail sentence 2? 2 classes, accuracy on validation."""

    name = "rte"
    description = "GLUE RTE: sentence-pair entailment, 2 classes, accuracy on validation"
    dataset_config = "rte"
    text_keys = ("sentence1", "sentence2")
    num_labels = 2
    label_words = ("Yes", "No")  # label ids: 0 entailment, 1 not entailment
