"""Running a matrix: the cell queue and its workers, HP search, the Trainer subclass and callbacks, distillation,
MLflow tracking and the checks that run before anything is written. Builds on core, config, results and deploy.
"""
