import time, torch
from ganlab.augment import ADA
torch.manual_seed(0); torch.set_num_threads(2)
x = torch.rand(64, 3, 32, 32) * 2 - 1
ada = ADA()  # p = 0
for _ in range(3): ada(x)
t = time.perf_counter(); n = 20
for _ in range(n): ada(x)
print(f"ADA at p=0, 64 images at 32 px: {(time.perf_counter() - t) / n * 1000:.1f} ms per call")
ada = ADA(initial_p=0.5)
x.requires_grad_(True)
for _ in range(3): ada(x).sum().backward()
t = time.perf_counter()
for _ in range(n): ada(x).sum().backward()
print(f"ADA at p=0.5 forward+backward: {(time.perf_counter() - t) / n * 1000:.1f} ms per call")
