"""CPU anchors of seg-model's benchmark U-Net (same architecture, loss, optimiser).

U-Net depth 4, base 16, batch norm, transposed-conv up-sampling; BCE-with-logits + soft Dice;
Adam lr 1e-3; batch 8 of 3x128x128. Modes:
    --mode eager        PyTorch eager (train and inference)
    --mode compile      torch.compile (inductor) of the same module (train and inference)
    --mode onnxruntime  onnxruntime on --onnx FILE (inference only; seg-model's own export of
                        the same U-Net, uint8 NHWC in, so torch is not needed)
Prints one JSON line with median step times and throughputs; usable alone:
    python unet_reference.py --steps 10 --warmup 3 --mode compile
With --serve it keeps one model and answers commands on stdin, one JSON line each, so that
seg-model's `throughput` bench can interleave its rounds with these (drift cancels):
    train K   -> {"train_s": [K step times]}   ([] in onnxruntime mode)
    infer K   -> {"infer_s": [K batch times]}
    flops     -> {"forward_flops": F, "train_flops": T}  (one image, counted by torch)
    peak      -> {"gemm_gflops": G}  (the measured float32 gemm peak with these threads)
    quit
"""
import argparse
import json
import os
import statistics
import sys
import time


def torch_model(batch_norm):
    """The U-Net class and the loss, in PyTorch (imported here: onnxruntime mode needs no torch)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class ConvBlock(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            norm = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: nn.Identity())
            self.body = nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm), norm(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=not batch_norm), norm(cout), nn.ReLU(inplace=True),
            )

        def forward(self, x):
            return self.body(x)

    class UNet(nn.Module):
        def __init__(self, cin=3, classes=1, base=16, depth=4):
            super().__init__()
            self.inc = ConvBlock(cin, base)
            self.downs = nn.ModuleList(ConvBlock(base << i, base << (i + 1)) for i in range(depth))
            self.ups = nn.ModuleList(nn.ConvTranspose2d(base << (i + 1), base << i, 2, stride=2) for i in reversed(range(depth)))
            self.blocks = nn.ModuleList(ConvBlock(base << (i + 1), base << i) for i in reversed(range(depth)))
            self.head = nn.Conv2d(base, classes, 1)

        def forward(self, x):
            x = self.inc(x)
            skips = []
            for down in self.downs:
                skips.append(x)
                x = down(F.max_pool2d(x, 2))
            for up, block, skip in zip(self.ups, self.blocks, reversed(skips)):
                x = block(torch.cat([skip, up(x)], 1))
            return self.head(x)

    def loss_fn(logits, target):
        bce = F.binary_cross_entropy_with_logits(logits, target)
        p = torch.sigmoid(logits)
        dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
        return bce + dice

    return UNet, loss_fn


def timed(fn, n):
    """Seconds of `n` calls of `fn` (each ends with a host read, so device work is included)."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def torch_steps(args):
    """(name, train step, inference batch, extra commands) of eager or compiled PyTorch."""
    import torch
    UNet, loss_fn = torch_model(batch_norm=not args.no_batch_norm)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    model = UNet().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch, 3, args.size, args.size, device=dev)
    y = (torch.rand(args.batch, 1, args.size, args.size, device=dev) > 0.7).float()
    run = torch.compile(model) if args.mode == "compile" else model

    def train_step():
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(run(x), y)
        loss.backward()
        opt.step()
        loss.item()

    def infer():
        model.eval()
        with torch.inference_mode():
            run(x).sum().item()

    def flops():
        from torch.utils.flop_counter import FlopCounterMode
        one = torch.randn(1, 3, args.size, args.size, device=dev)
        target = (torch.rand(1, 1, args.size, args.size, device=dev) > 0.7).float()
        model.eval()
        with FlopCounterMode(display=False) as fwd, torch.no_grad():
            model(one)
        model.train()
        with FlopCounterMode(display=False) as step:
            loss_fn(model(one), target).backward()
        opt.zero_grad(set_to_none=True)
        return {"forward_flops": fwd.get_total_flops(), "train_flops": step.get_total_flops()}

    def peak():
        n = 2048
        a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
        times = timed(lambda: torch.mm(a, b), 12)[2:]
        return {"gemm_gflops": 2 * n ** 3 / statistics.median(times) / 1e9}

    name = f"pytorch-{'compile' if args.mode == 'compile' else 'eager'}-{dev.type}"
    facts = {"backend": name, "torch": torch.__version__, "threads": torch.get_num_threads()}
    return facts, train_step, infer, {"flops": flops, "peak": peak}


def onnxruntime_steps(args):
    """(facts, no train step, inference batch, no extra commands) of onnxruntime on --onnx."""
    import numpy as np
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(args.batch, args.size, args.size, 3), dtype=np.uint8)
    name = session.get_inputs()[0].name

    def infer():
        session.run(["probabilities"], {name: x})

    facts = {"backend": "onnxruntime-cpu model.onnx", "torch": f"ort {ort.__version__}",
             "threads": args.threads}
    return facts, None, infer, {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-batch-norm", action="store_true")
    ap.add_argument("--mode", choices=["eager", "compile", "onnxruntime"], default="eager")
    ap.add_argument("--onnx", help="model.onnx for --mode onnxruntime")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--serve", action="store_true")
    args = ap.parse_args()
    if args.mode == "onnxruntime":
        if not args.onnx:
            ap.error("--mode onnxruntime needs --onnx FILE")
        facts, train_step, infer, extra = onnxruntime_steps(args)
    else:
        facts, train_step, infer, extra = torch_steps(args)
    # Compilation (and onnxruntime's first-run planning) is not timed.
    if train_step:
        timed(train_step, args.warmup)
    timed(infer, args.warmup)

    if args.serve:
        print(json.dumps(facts), flush=True)
        for line in sys.stdin:
            cmd = line.split()
            if not cmd or cmd[0] == "quit":
                break
            if cmd[0] == "train":
                print(json.dumps({"train_s": timed(train_step, int(cmd[1])) if train_step else []}), flush=True)
            elif cmd[0] == "infer":
                print(json.dumps({"infer_s": timed(infer, int(cmd[1]))}), flush=True)
            elif cmd[0] in extra:
                print(json.dumps(extra[cmd[0]]()), flush=True)
            else:
                print(json.dumps({"error": f"unknown command {cmd[0]}"}), flush=True)
        return

    out = dict(facts)
    if train_step:
        tm = statistics.median(timed(train_step, args.steps))
        out.update(train_step_median_s=tm, train_images_per_sec=args.batch / tm)
    im = statistics.median(timed(infer, args.steps))
    out.update(infer_batch_median_s=im, infer_images_per_sec=args.batch / im)
    for key, fn in extra.items():
        out.update(fn())
    print(json.dumps(out))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))
    main()
