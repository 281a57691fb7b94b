// regctl's LibTorch runner: proves that a TorchScript artifact, or an AOTInductor package, loads and
// runs with no Python.
//
// Usage: libtorch_runner MODEL CASES.pt RESULTS.pt DEVICE SEED [torchscript|aoti]
//
// CASES.pt and RESULTS.pt may each be "-": the cases are then read from standard input and the
// results written to standard output (the judge's way: no temporary files on disk), while anything
// the artifact itself prints goes to standard error. MODEL may be "-" too: its path is then the first
// line of standard input, before the cases, so the judge can start the runner before it knows which
// artifact it will run and LibTorch's own start (0.2 s of loading and static initialisers) is over
// by the time it does (worker/judge/warm_runner.py).
//
// MODEL is a TorchScript file (torch::jit::load, the default) or, with `aoti`, an AOTInductor
// package (.pt2) loaded with torch::inductor::AOTIModelPackageLoader, which takes the case's tensors
// as a flat list (torch.export specialised any Python scalars into the package) and returns its
// outputs as a flat list of tensors.
//
// CASES.pt is what Python's torch.save writes for a list of cases, each a list of positional
// arguments (tensors and Python int/float/bool). RESULTS.pt is written with torch::pickle_save
// and read back by torch.load(weights_only=True): a list with one (ok, value) tuple per case,
// value being forward()'s output moved to the CPU when ok, or the exception message when not.
//
// Runs under torch::NoGradGuard with the artifact in eval mode, reseeding the default generator
// before every case as the Python stage does.
//
// Exit codes: 0 every case ran (each may still have failed: see its tuple), 2 bad usage,
// 3 the artifact cannot be loaded (the message is on stderr), 4 the cases cannot be read or the
// results cannot be written. Built by worker/judge/libtorch.py against the LibTorch inside the
// installed torch wheel.

#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>
#include <torch/serialize.h>

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

namespace {

// "-" for CASES is standard input; "-" for RESULTS is the standard output the runner started with,
// which `main` moves aside first so that nothing the artifact prints can land in the results.
int results_fd = -1;

std::vector<char> read_file(const std::string& path) {
  if (path == "-") {
    return std::vector<char>(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot open " + path);
  }
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::vector<char>& data) {
  if (path == "-") {
    size_t done = 0;
    while (done < data.size()) {
      const ssize_t n = ::write(results_fd, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        throw std::runtime_error("cannot write the results to the standard output");
      }
      done += static_cast<size_t>(n);
    }
    return;
  }
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!out) {
    throw std::runtime_error("cannot write " + path);
  }
}

// A copy of `value` with every tensor moved to `device` (inputs) or the CPU (outputs).
c10::IValue to_device(const c10::IValue& value, const c10::Device& device) {
  if (value.isTensor()) {
    return value.toTensor().to(device);
  }
  if (value.isTuple()) {
    std::vector<c10::IValue> items;
    for (const auto& item : value.toTupleRef().elements()) {
      items.push_back(to_device(item, device));
    }
    return c10::ivalue::Tuple::create(std::move(items));
  }
  if (value.isList()) {
    auto list = value.toList();
    c10::impl::GenericList copy(list.elementType());
    for (const c10::IValue item : list) {
      copy.push_back(to_device(item, device));
    }
    return copy;
  }
  if (value.isGenericDict()) {
    auto dict = value.toGenericDict();
    c10::impl::GenericDict copy(dict.keyType(), dict.valueType());
    for (const auto& entry : dict) {
      copy.insert(entry.key(), to_device(entry.value(), device));
    }
    return copy;
  }
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6 && argc != 7) {
    std::cerr << "usage: " << argv[0] << " MODEL CASES.pt RESULTS.pt DEVICE SEED [torchscript|aoti]" << std::endl;
    return 2;
  }
  std::string model_path = argv[1];
  const std::string cases_path = argv[2], results_path = argv[3];
  const c10::Device device(argv[4]);
  const uint64_t seed = std::strtoull(argv[5], nullptr, 10);
  const std::string kind = argc == 7 ? argv[6] : "torchscript";
  if (results_path == "-") {  // the results get the original stdout; anything printed goes to stderr
    results_fd = ::dup(STDOUT_FILENO);
    if (results_fd < 0 || ::dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
      std::cerr << "cannot set the standard output aside for the results" << std::endl;
      return 4;
    }
  }
  if (kind != "torchscript" && kind != "aoti") {
    std::cerr << "unknown model kind " << kind << "; expected torchscript or aoti" << std::endl;
    return 2;
  }

  if (model_path == "-" && (!std::getline(std::cin, model_path) || model_path.empty())) {
    std::cerr << "no model path on the first line of the standard input" << std::endl;
    return 4;
  }

  torch::jit::Module module;
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> package;
  std::function<c10::IValue(std::vector<c10::IValue>&)> forward;
  try {
    if (kind == "aoti") {
      package = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
          model_path, "model", false, 1, device.is_cuda() ? device.index() : -1);
      forward = [&package](std::vector<c10::IValue>& args) {
        std::vector<at::Tensor> tensors;
        for (const auto& arg : args) {
          if (arg.isTensor()) {
            tensors.push_back(arg.toTensor());
          }
        }
        c10::impl::GenericList outputs(c10::TensorType::get());
        for (auto& tensor : package->run(tensors)) {
          outputs.push_back(tensor);
        }
        return c10::IValue(outputs);
      };
    } else {
      module = torch::jit::load(model_path, device);
      module.eval();
      forward = [&module](std::vector<c10::IValue>& args) { return module.forward(args); };
    }
  } catch (const std::exception& exc) {
    std::cerr << exc.what() << std::endl;
    return 3;
  }

  c10::IValue cases;
  try {
    cases = torch::pickle_load(read_file(cases_path));
    TORCH_CHECK(cases.isList(), "expected a list of cases, got ", cases.tagKind());
  } catch (const std::exception& exc) {
    std::cerr << "cannot read the cases: " << exc.what() << std::endl;
    return 4;
  }

  torch::NoGradGuard no_grad;
  c10::impl::GenericList results(c10::AnyType::get());
  for (const c10::IValue case_value : cases.toList()) {
    std::vector<c10::IValue> args;
    try {
      for (const c10::IValue arg : case_value.toList()) {
        args.push_back(to_device(arg, device));
      }
    } catch (const std::exception& exc) {
      std::cerr << "cannot read a case: " << exc.what() << std::endl;
      return 4;
    }
    torch::manual_seed(seed);  // the seed the Python stage resets before every call
    try {
      c10::IValue output = to_device(forward(args), c10::Device(c10::kCPU));
      results.push_back(c10::ivalue::Tuple::create({true, output}));
    } catch (const std::exception& exc) {
      results.push_back(c10::ivalue::Tuple::create({false, std::string(exc.what())}));
    }
  }

  try {
    write_file(results_path, torch::pickle_save(results));
  } catch (const std::exception& exc) {
    std::cerr << "cannot write the results: " << exc.what() << std::endl;
    return 4;
  }
  return 0;
}
