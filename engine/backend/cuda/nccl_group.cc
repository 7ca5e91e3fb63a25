#include "engine/backend/cuda/nccl_group.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/backend/cuda/cuda_resources.h"
#include "engine/backend/cuda/nccl_check.h"
#include "engine/common/status_macros.h"

namespace moegraph {

absl::StatusOr<std::string> NewNcclGroupId() {
  RETURN_IF_ERROR(NvlsChosen());
  ncclUniqueId id;
  NCCL_RETURN_IF_ERROR(ncclGetUniqueId(&id));
  return std::string(id.internal, sizeof(id.internal));
}

absl::StatusOr<std::unique_ptr<NcclComms>> JoinNcclGroup(const std::string& group_id, int world,
                                                         int first_rank,
                                                         const std::vector<int>& devices) {
  RETURN_IF_ERROR(NvlsChosen());
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
  // ncclCommInitRank from one thread); the group is ended whatever failed.
  NCCL_RETURN_IF_ERROR(ncclGroupStart());
  absl::Status s;
  for (int i = 0; s.ok() && i < local; ++i) {
    if (const cudaError_t e = cudaSetDevice(devices[i]); e != cudaSuccess) {
      const absl::Status why =
          cuda_internal::CudaErrorStatus(e, "cudaSetDevice", __FILE__, __LINE__);
      s = absl::Status(why.code(),
                       absl::StrCat("CUDA device cuda:", devices[i], ": ", why.message()));
    }
    if (s.ok()) s = NcclStatus(ncclCommInitRank(&comms[i], world, id, first_rank + i), "init");
  }
  const absl::Status ended = NcclStatus(ncclGroupEnd(), "ncclCommInitRank (group)");
  std::vector<void*> made;
  for (ncclComm_t c : comms) {
    if (c != nullptr) made.push_back(c);
  }
  // Owned (and freed on an error) from here on.
  std::unique_ptr<NcclComms> out = NcclComms::Adopt(std::move(made), world, first_rank);
  RETURN_IF_ERROR(s);
  RETURN_IF_ERROR(ended);
  return out;
}

absl::Status CheckNcclGroup(const NcclComms& comms, const std::vector<int>& devices, int world,
                            int first_rank) {
  const int local = comms.size();
  if (local != static_cast<int>(devices.size())) {
    return absl::InvalidArgumentError("NCCL group check: one device a communicator");
  }
  std::vector<DeviceBuffer> buf;
  std::vector<CudaStream> streams;
  for (int i = 0; i < local; ++i) {
    CUDA_RETURN_IF_ERROR(cudaSetDevice(devices[i]));
    ASSIGN_OR_RETURN(DeviceBuffer b, DeviceBuffer::Allocate(sizeof(int32_t)));
    ASSIGN_OR_RETURN(CudaStream st, CudaStream::Create());
    const int32_t mine = first_rank + i + 1;
    CUDA_RETURN_IF_ERROR(cudaMemcpy(b.data(), &mine, sizeof(mine), cudaMemcpyHostToDevice));
    buf.push_back(std::move(b));
    streams.push_back(std::move(st));
  }
  NCCL_RETURN_IF_ERROR(ncclGroupStart());
  absl::Status s;
  for (int i = 0; s.ok() && i < local; ++i) {
    s = NcclStatus(ncclAllReduce(buf[i].data(), buf[i].data(), 1, ncclInt32, ncclSum,
                                 static_cast<ncclComm_t>(comms.comm(i)), streams[i].get()),
                   "ncclAllReduce");
  }
  const absl::Status ended = NcclStatus(ncclGroupEnd(), "ncclAllReduce (group)");
  RETURN_IF_ERROR(s);
  RETURN_IF_ERROR(ended);
  const int64_t want = int64_t{world} * (world + 1) / 2;
  for (int i = 0; i < local; ++i) {
    int32_t got = 0;
    CUDA_RETURN_IF_ERROR(cudaSetDevice(devices[i]));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(streams[i].get()));
    CUDA_RETURN_IF_ERROR(cudaMemcpy(&got, buf[i].data(), sizeof(got), cudaMemcpyDeviceToHost));
    if (got != want) {
      return absl::InternalError(absl::StrCat("NCCL group check: rank ", first_rank + i, " summed ",
                                              got, ", expected ", want));
    }
  }
  return absl::OkStatus();
}

}  // namespace moegraph
