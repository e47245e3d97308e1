import pytest
import torch

from ciss_engine.errors import BundleError
from ciss_engine.network import NetworkConfig, build_network, grow_classifier, post_activation


def test_pre_activation_features_feed_the_classifier_through_its_relu_at_full_resolution():
    torch.manual_seed(0)
    network = build_network(NetworkConfig(init_filters=8, out_channels=5)).eval()
    image = torch.randn(2, 1, 32, 32, 32)
    logits, features = network.forward_with_features(image)
    assert logits.shape == (2, 5, 32, 32, 32) and features.shape == (2, 8, 32, 32, 32)
    torch.testing.assert_close(network.classifier(post_activation(features)), logits)
    torch.testing.assert_close(network(image), logits)
    # The tap is the group-normalised decoder output before SegResNet's final ReLU: signed, about zero-mean.
    assert (features < 0).float().mean() > 0.2 and (features > 0).float().mean() > 0.2
    torch.testing.assert_close(features, network.feature_head[0](network.encode_decode(image)[0]))


def test_encoder_stages_come_from_the_same_pass_finest_first_bottleneck_last():
    torch.manual_seed(0)
    network = build_network(NetworkConfig(init_filters=8, out_channels=5)).eval()
    image = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        logits, features, stages = network.forward_with_stages(image)
        expected_logits, expected_features = network.forward_with_features(image)
        encoded = network.backbone.encode(image)[1]
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(features, expected_features)
    assert [tuple(s.shape[1:]) for s in stages] == [(8, 32, 32, 32), (16, 16, 16, 16), (32, 8, 8, 8), (64, 4, 4, 4)]
    for stage, reference in zip(stages, encoded):
        torch.testing.assert_close(stage, reference)


def test_head_growth_keeps_old_predictions_and_splits_background():
    torch.manual_seed(0)
    network = build_network(NetworkConfig(init_filters=8, out_channels=5)).eval()
    image = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        before = network(image).softmax(1)
        grow_classifier(network, 2)
        after = network(image).softmax(1)
    assert after.shape[1] == 7 and network.config.out_channels == 7
    torch.testing.assert_close(after[:, 1:5], before[:, 1:5])
    torch.testing.assert_close(after[:, [0, 5, 6]], before[:, :1].expand(-1, 3, -1, -1, -1) / 3)
    old_argmax = before.argmax(1)
    assert torch.equal(after.argmax(1)[old_argmax > 0], old_argmax[old_argmax > 0])
    with pytest.raises(ValueError):
        grow_classifier(network, 0)


def test_only_whitelisted_networks_are_built_from_a_bundle():
    with pytest.raises(BundleError, match="unsupported network 'os.system'"):
        NetworkConfig.from_json({"name": "os.system"})
    config = NetworkConfig(init_filters=8, out_channels=3)
    assert NetworkConfig.from_json(config.to_json()) == config
