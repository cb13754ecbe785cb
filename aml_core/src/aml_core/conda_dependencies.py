"""``CondaDependencies`` where azureml-core keeps it (``azureml.core.conda_dependencies``)."""

from aml_core.environment import CondaDependencies

__all__ = ["CondaDependencies"]
