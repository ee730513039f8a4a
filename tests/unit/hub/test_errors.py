import inspect

from fhir.resources.R4B.operationoutcome import OperationOutcome

from hub import errors


def _error_classes() -> list[type[errors.HubError]]:
    return [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.HubError)
    ]


def test_stable_codes_are_unique_and_documented() -> None:
    codes = [c.hub_code for c in _error_classes()]
    assert len(codes) == len(set(codes))
    for cls in _error_classes():
        assert cls.hub_code in (errors.__doc__ or ""), cls.__name__


def test_operation_outcome_is_valid_r4_with_location() -> None:
    for cls in _error_classes():
        exc = cls.at("bad thing", "Patient.birthDate")
        oo = exc.operation_outcome()
        OperationOutcome.model_validate(oo)
        assert oo["issue"][0]["expression"] == ["Patient.birthDate"]
        assert oo["issue"][0]["details"]["coding"][0]["code"] == cls.hub_code
        assert 400 <= cls.status < 600
