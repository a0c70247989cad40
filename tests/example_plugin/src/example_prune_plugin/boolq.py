"""``boolq``: SuperGLUE BoolQ (yes/no questions about a passage), built on prune-bench's GLUE task."""

from bench.tasks.glue import GlueTask


class BoolQ(GlueTask):
    """BoolQ: is the answer to the question about the passage yes? 2 classes, accuracy on validation."""

    name = "boolq"
    description = "SuperGLUE BoolQ: yes/no question answering over a passage, accuracy on validation"
    dataset_id = "aps/super_glue"
    dataset_config = "boolq"
    text_keys = ("question", "passage")
    num_labels = 2
    label_words = ("No", "Yes")  # label ids: 0 false, 1 true
