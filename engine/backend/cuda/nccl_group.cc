#include "engine/backend/cuda/nccl_group.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace moegraph {
namespace {

absl::Status Nccl(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("NCCL ", what, ": ", ncclGetErrorString(r)));
}
absl::Status Cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("CUDA ", what, ": ", cudaGetErrorString(e)));
}

absl::Status NvlsChosen() {
  if (std::getenv("NCCL_NVLS_ENABLE") != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "NCCL: NCCL_NVLS_ENABLE is unset; call ApplyNcclDefaults() first in main, or set it");
}

}  // namespace

absl::StatusOr<std::string> NewNcclGroupId() {
  if (absl::Status s = NvlsChosen(); !s.ok()) return s;
  ncclUniqueId id;
  if (absl::Status s = Nccl(ncclGetUniqueId(&id), "ncclGetUniqueId"); !s.ok()) return s;
  return std::string(id.internal, sizeof(id.internal));
}

absl::StatusOr<std::unique_ptr<NcclComms>> JoinNcclGroup(const std::string& group_id, int world,
                                                         int first_rank,
                                                         const std::vector<int>& devices) {
  if (absl::Status s = NvlsChosen(); !s.ok()) return s;
  ncclUniqueId id;
  if (group_id.size() != sizeof(id.internal)) {
    return absl::InvalidArgumentError(
        absl::StrCat("NCCL group id: ", group_id.size(), " bytes, expected ", sizeof(id.internal)));
  }
  const int local = static_cast<int>(devices.size());
  if (local < 1 || world < 1 || first_rank < 0 || first_rank + local > world) {
    return absl::InvalidArgumentError(absl::StrCat("NCCL group: ranks ", first_rank, "..",
                                                   first_rank + local - 1, " outside a group of ",
                                                   world));
  }
  std::memcpy(id.internal, group_id.data(), sizeof(id.internal));
  std::vector<ncclComm_t> comms(local, nullptr);
  // Several GPUs of one process join in one group call (NCCL's rule for
  // ncclCommInitRank from one thread).
  absl::Status s = Nccl(ncclGroupStart(), "ncclGroupStart");
  for (int i = 0; s.ok() && i < local; ++i) {
    s = Cuda(cudaSetDevice(devices[i]), "cudaSetDevice");
    if (s.ok())
      s = Nccl(ncclCommInitRank(&comms[i], world, id, first_rank + i), "ncclCommInitRank");
  }
  const absl::Status ended = Nccl(ncclGroupEnd(), "ncclCommInitRank (group)");
  if (s.ok()) s = ended;
  std::vector<void*> owned;
  for (ncclComm_t c : comms) {
    if (c != nullptr) owned.push_back(c);
  }
  std::unique_ptr<NcclComms> out =
      NcclComms::Adopt(std::move(owned), world, first_rank);  // freed on error too
  if (!s.ok()) return s;
  return out;
}

absl::Status CheckNcclGroup(const NcclComms& comms, const std::vector<int>& devices, int world,
                            int first_rank) {
  const int local = comms.size();
  if (local != static_cast<int>(devices.size())) {
    return absl::InvalidArgumentError("NCCL group check: one device a communicator");
  }
  std::vector<int32_t*> buf(local, nullptr);
  std::vector<cudaStream_t> streams(local, nullptr);
  absl::Status s;
  for (int i = 0; s.ok() && i < local; ++i) {
    s = Cuda(cudaSetDevice(devices[i]), "cudaSetDevice");
    if (s.ok()) s = Cuda(cudaMalloc(&buf[i], sizeof(int32_t)), "cudaMalloc");
    if (s.ok()) s = Cuda(cudaStreamCreateWithFlags(&streams[i], cudaStreamNonBlocking), "stream");
    const int32_t mine = first_rank + i + 1;
    if (s.ok()) s = Cuda(cudaMemcpy(buf[i], &mine, sizeof(mine), cudaMemcpyHostToDevice), "copy");
  }
  if (s.ok()) {
    s = Nccl(ncclGroupStart(), "ncclGroupStart");
    for (int i = 0; s.ok() && i < local; ++i) {
      s = Nccl(ncclAllReduce(buf[i], buf[i], 1, ncclInt32, ncclSum,
                             static_cast<ncclComm_t>(comms.comm(i)), streams[i]),
               "ncclAllReduce");
    }
    const absl::Status ended = Nccl(ncclGroupEnd(), "ncclAllReduce (group)");
    if (s.ok()) s = ended;
  }
  const int64_t want = int64_t{world} * (world + 1) / 2;
  for (int i = 0; s.ok() && i < local; ++i) {
    int32_t got = 0;
    s = Cuda(cudaSetDevice(devices[i]), "cudaSetDevice");
    if (s.ok()) s = Cuda(cudaStreamSynchronize(streams[i]), "all-reduce");
    if (s.ok()) s = Cuda(cudaMemcpy(&got, buf[i], sizeof(got), cudaMemcpyDeviceToHost), "copy");
    if (s.ok() && got != want) {
      s = absl::InternalError(absl::StrCat("NCCL group check: rank ", first_rank + i, " summed ",
                                           got, ", expected ", want));
    }
  }
  for (int i = 0; i < local; ++i) {
    cudaSetDevice(devices[i]);
    if (streams[i] != nullptr) cudaStreamDestroy(streams[i]);
    if (buf[i] != nullptr) cudaFree(buf[i]);
  }
  return s;
}

}  // namespace moegraph
