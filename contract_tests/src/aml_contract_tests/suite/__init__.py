"""Every contract. ``from aml_contract_tests.suite import *`` brings them in under
``Test*`` names so pytest collects them; or subclass one: ``class TestMine(DeployContract)``."""

from aml_contract_tests.suite.test_auth import AuthContract
from aml_contract_tests.suite.test_deploy import DeployContract
from aml_contract_tests.suite.test_errors import ErrorContract
from aml_contract_tests.suite.test_lifecycle import LifecycleContract
from aml_contract_tests.suite.test_scale import ScaleContract
from aml_contract_tests.suite.test_traffic import TrafficContract
from aml_contract_tests.suite.test_unsupported import UnsupportedContract

TestAuthContract = AuthContract
TestDeployContract = DeployContract
TestErrorContract = ErrorContract
TestLifecycleContract = LifecycleContract
TestScaleContract = ScaleContract
TestTrafficContract = TrafficContract
TestUnsupportedContract = UnsupportedContract

__all__ = ["TestAuthContract", "TestDeployContract", "TestErrorContract", "TestLifecycleContract", "TestScaleContract", "TestTrafficContract", "TestUnsupportedContract"]
