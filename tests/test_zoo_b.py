"""The model zoo tier's other models (see test_zoo.py): a file of their own, so that pytest-xdist
(one worker per file) runs the two halves of the tier on both workers."""

import pytest

from test_zoo import REST, make_tests, zoo  # noqa: F401  (zoo: the module-scoped model fixture)

pytestmark = pytest.mark.zoo

(test_every_explainer_gives_a_finite_float32_map, test_saliency_is_the_gradient_of_the_pre_softmax_logit,
 test_grad_cam_default_layer_is_the_last_spatial_tensor, test_grad_cam_default_map_is_not_constant) = make_tests(REST)
