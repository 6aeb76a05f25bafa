import pytest
import torch
from torch import nn

from skdssm._features import OOV, PAD, TowerSchema
from skdssm.nn import SequenceEncoder, Tower, TwoTowerModule, make_mlp, masked_mean


def schema(**kwargs):
    return TowerSchema(categorical={"id": 10}, ids=("id",), **kwargs)


def test_temperature_scales_the_logits():
    """Pitfall 1: a temperature that is stored but never applied."""
    torch.manual_seed(0)
    module = TwoTowerModule(schema(), TowerSchema(categorical={"item": 10}), hidden_dims=(8,),
                            temperature=0.1)
    batch = {"user:id": torch.tensor([2, 3]), "item:item": torch.tensor([4, 5])}
    logits, user, item, _ = module(**batch)
    module.temperature = 0.2
    halved, *_ = module(**batch)
    torch.testing.assert_close(halved, logits / 2)
    torch.testing.assert_close(logits, (user * item).sum(1) / 0.1)


def test_last_layer_is_linear_unless_asked():
    """Pitfall 2: no activation, BatchNorm or dropout right before L2 normalisation."""
    mlp = make_mlp(4, (8, 3), activation="relu", batch_norm=True, dropout=0.5)
    assert isinstance(mlp[-1], nn.Linear)
    activated = make_mlp(4, (8, 3), activation="relu", batch_norm=True, activate_output=True)
    assert isinstance(activated[-1], nn.ReLU) and isinstance(activated[-2], nn.BatchNorm1d)
    torch.manual_seed(0)
    tower = Tower(schema(), "user", hidden_dims=(16, 8), activation="relu")
    out = tower({"user:id": torch.arange(2, 10)})
    assert (out < 0).any()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(8))


@pytest.mark.parametrize("position", ["before", "after"])
def test_dropout_position(position):
    mlp = make_mlp(4, (8, 8, 3), dropout=0.2, dropout_position=position, batch_norm=True,
                   activation="tanh", init="xavier_normal")
    kinds = [type(layer).__name__ for layer in mlp]
    if position == "before":
        assert kinds == ["Dropout", "Linear", "BatchNorm1d", "Tanh"] * 2 + ["Dropout", "Linear"]
    else:
        assert kinds == ["Linear", "BatchNorm1d", "Tanh", "Dropout"] * 2 + ["Linear"]


@pytest.mark.parametrize("activation", ["relu", "elu", "leaky_relu", "silu", "tanh"])
@pytest.mark.parametrize("position, batch_norm, activate_output", [
    ("after", False, False), ("before", True, False), ("after", True, True)])
def test_in_place_activations_give_the_out_of_place_values_and_gradients(
        activation, position, batch_norm, activate_output):
    torch.manual_seed(0)
    mlp = make_mlp(6, (16, 16, 4), activation=activation, batch_norm=batch_norm,
                   dropout_position=position, activate_output=activate_output)
    reference = make_mlp(6, (16, 16, 4), activation=activation, batch_norm=batch_norm,
                         dropout_position=position, activate_output=activate_output)
    reference.load_state_dict(mlp.state_dict())
    for layer in reference:  # the same modules, computing out of place
        if hasattr(layer, "inplace"):
            layer.inplace = False
    assert any(getattr(layer, "inplace", False) for layer in mlp) == (activation != "tanh")
    x = torch.randn(32, 6)
    x_fast, x_reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, expected = mlp(x_fast), reference(x_reference)
    out.square().sum().backward()
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(x_fast.grad, x_reference.grad)
    for (name, a), b in zip(mlp.named_parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_masked_mean_ignores_padding_and_gives_zeros_for_empty_rows():
    values = torch.tensor([[[1.0], [3.0], [100.0]], [[5.0], [7.0], [9.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    torch.testing.assert_close(masked_mean(values, mask), torch.tensor([[2.0], [0.0]]))


def test_multi_valued_feature_pooling_is_padding_invariant():
    torch.manual_seed(0)
    tower = Tower(TowerSchema(multi={"genres": 6}), "item", hidden_dims=(4,))
    tower.eval()
    short = tower({"item:genres": torch.tensor([[2, 3, PAD, PAD]])})
    long = tower({"item:genres": torch.tensor([[2, 3, PAD, PAD, PAD, PAD, PAD]])})
    torch.testing.assert_close(short, long)


def test_sequence_encoder_handles_empty_histories_and_masks_padding():
    torch.manual_seed(0)
    encoder = SequenceEncoder(cardinality=12, max_len=4, dim=8, n_heads=2, n_layers=2).eval()
    codes = torch.tensor([[PAD, PAD, PAD, PAD], [PAD, PAD, 5, 6], [7, 7, 5, 6]])
    out = encoder(codes)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], torch.zeros(8))
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters() if p.grad is not None)


def test_unseen_ids_start_at_zero_and_id_dropout_only_applies_in_training():
    torch.manual_seed(0)
    tower = Tower(schema(), "user", hidden_dims=(4,), id_dropout=1.0)
    assert tower.categorical[0].weight[OOV].abs().sum() == 0
    ids = torch.tensor([2, 3])
    tower.train()
    dropped = tower({"user:id": ids})
    oov = tower({"user:id": torch.tensor([OOV, OOV])})
    torch.testing.assert_close(dropped, oov)
    tower.eval()
    assert not torch.allclose(tower({"user:id": ids})[0], tower({"user:id": ids})[1])


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = Tower(schema(sequence={"history": (12, 4)}), "user", hidden_dims=(16, 8))
    checkpointed = Tower(schema(sequence={"history": (12, 4)}), "user", hidden_dims=(16, 8),
                         gradient_checkpointing=True)
    checkpointed.load_state_dict(plain.state_dict())
    batch = {"user:id": torch.tensor([2, 3]), "user:history": torch.tensor([[0, 2, 3, 4], [5, 6, 7, 8]])}
    grads = []
    for tower in (plain, checkpointed):
        tower.train()
        tower(batch).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in tower.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_ensemble_logits_are_the_mean_of_independent_members():
    """ensemble_size=n: n differently initialised tower pairs; embeddings are the members'
    concatenated / sqrt(n) (unit norm), so serving a dot product serves the mean member score."""
    torch.manual_seed(0)
    module = TwoTowerModule(schema(), TowerSchema(categorical={"item": 10}), hidden_dims=(8,),
                            ensemble_size=3)
    batch = {"user:id": torch.tensor([2, 3, 4]), "item:item": torch.tensor([4, 5, 6])}
    logits, user, item, _ = module(**batch)
    assert user.shape == (3, 24)
    torch.testing.assert_close(user.norm(dim=1), torch.ones(3))
    users, items = module.members(user), module.members(item)
    for m, (member_user, member_item) in enumerate(zip(users, items)):
        torch.testing.assert_close(member_user, module.user_tower.members[m](batch))
        torch.testing.assert_close(member_item, module.item_tower.members[m](batch))
    member_logits = torch.stack([module.score(u, i) for u, i in zip(users, items)])
    torch.testing.assert_close(logits, member_logits.mean(0))
    assert not torch.allclose(users[0], users[1])


def test_cpu_dropout_keeps_the_expected_share_and_scale():
    from skdssm.nn import Dropout

    torch.manual_seed(0)
    layer = Dropout(0.4)
    x = torch.ones(200, 500)
    out = layer(x)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.6) < 0.01
    torch.testing.assert_close(out[kept], torch.full((int(kept.sum()),), 1 / 0.6))
    assert abs(out.mean().item() - 1.0) < 0.02  # unbiased, as nn.Dropout
    layer.eval()
    assert torch.equal(layer(x), x)
