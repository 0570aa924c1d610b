"""The FER2013 tutorial network in PyTorch (issue 37's test model): three conv blocks
Conv3x3 -> BatchNorm -> RReLU -> MaxPool (64/128/256 channels), then FC 9216-4096-1024-256-7.
Input: N x 1 x 48 x 48 grey faces, histogram-equalised, 0-1 (NCHW); output: 7 logits (FER2013 labels).
`fer-convert model.pth --torch-class benchmarks/torch_tutorial_net.py:TutorialNet` reads a state_dict of it.
`save_keras_port` writes the same network, with the same weights, as a Keras file: the Keras route's input
when benchmarks/convert_routes.py times the routes on one network."""
import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.RReLU(), nn.MaxPool2d(2))


class TutorialNet(nn.Module):
    def __init__(self, classes: int = 7):
        super().__init__()
        self.features = nn.Sequential(_block(1, 64), _block(64, 128), _block(128, 256))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(9216, 4096), nn.RReLU(), nn.Linear(4096, 1024), nn.RReLU(),
            nn.Linear(1024, 256), nn.RReLU(), nn.Linear(256, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def load_and_export(state_dict: str, folder) -> tuple:
    """The trained network from its state_dict, saved as the two other files fer-convert reads:
    (folder/tutorial.pt2 by torch.export, folder/tutorial.onnx by torch.onnx.export)."""
    from pathlib import Path

    net = TutorialNet()
    net.load_state_dict(torch.load(state_dict, weights_only=True))
    net.eval()
    example = (torch.rand(1, 1, 48, 48),)
    pt2, onnx = Path(folder) / "tutorial.pt2", Path(folder) / "tutorial.onnx"
    torch.export.save(torch.export.export(net, example), pt2)
    torch.onnx.export(net, example, onnx, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}}, dynamo=False)
    return pt2, onnx


RRELU_EVAL_SLOPE = (1 / 8 + 1 / 3) / 2  # nn.RReLU in eval mode: a leaky ReLU at the mean of its (lower, upper)


def save_keras_port(net: TutorialNet, path) -> None:
    """`net` as a Keras model (NHWC, the same layers and weights; RReLU at eval is a fixed leaky ReLU), saved to
    `path` (.keras). Conv kernels go OIHW -> HWIO; the first dense layer's rows are reordered from PyTorch's
    C,H,W flattening to Keras's H,W,C."""
    import keras

    x = face = keras.Input((48, 48, 1), name="face")
    convs, norms = [m for m in net.features.modules() if isinstance(m, nn.Conv2d)], \
        [m for m in net.features.modules() if isinstance(m, nn.BatchNorm2d)]
    for conv, bn in zip(convs, norms):
        c = keras.layers.Conv2D(conv.out_channels, 3, padding="same")
        x = c(x)
        c.set_weights([conv.weight.detach().permute(2, 3, 1, 0).numpy(), conv.bias.detach().numpy()])
        b = keras.layers.BatchNormalization(epsilon=bn.eps)
        x = b(x)
        b.set_weights([t.detach().numpy() for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var)])
        x = keras.layers.MaxPooling2D(2)(keras.layers.LeakyReLU(negative_slope=RRELU_EVAL_SLOPE)(x))
    x = keras.layers.Flatten()(x)
    linears = [m for m in net.classifier.modules() if isinstance(m, nn.Linear)]
    for i, lin in enumerate(linears):
        w = lin.weight.detach().numpy().T  # in x out
        if i == 0:  # rows in C,H,W order -> H,W,C
            w = w.reshape(256, 6, 6, -1).transpose(1, 2, 0, 3).reshape(9216, -1)
        d = keras.layers.Dense(lin.out_features)
        x = d(x)
        d.set_weights([w, lin.bias.detach().numpy()])
        if i < len(linears) - 1:
            x = keras.layers.LeakyReLU(negative_slope=RRELU_EVAL_SLOPE)(x)
    keras.Model(face, x, name="tutorial").save(path)
