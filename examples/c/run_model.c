/* Runs a model that `dnnfusion compile MODEL -o DIR` saved, from C, without Python.

   Build:  gcc -O2 -I DIR run_model.c -L DIR -l:model.so -Wl,-rpath,DIR -o run_model
   Run:    ./run_model DIR/weights.bin IN_0.bin ... OUT_0.bin ... [THREADS]

   Each IN_k.bin holds input k's raw elements in C order (numpy: array.tofile), each OUT_k.bin receives
   output k's; model.h says their order, dtypes and sizes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* A 64-byte aligned buffer of `bytes` holding the file `path` (which must be exactly that long). */
static void* read_file(const char* path, uint64_t bytes) {
  void* data = aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  FILE* f = fopen(path, "rb");
  if (!data || !f) { fprintf(stderr, "cannot open %s\n", path); exit(2); }
  if (fread(data, 1, bytes, f) != bytes || fgetc(f) != EOF) {
    fprintf(stderr, "%s is not %llu bytes long\n", path, (unsigned long long)bytes);
    exit(2);
  }
  fclose(f);
  return data;
}

int main(int argc, char** argv) {
  if (argc < 2 + DF_MODEL_INPUTS + DF_MODEL_OUTPUTS) {
    fprintf(stderr, "usage: %s WEIGHTS.bin IN_0.bin... OUT_0.bin... [THREADS] (%d inputs, %d outputs)\n",
            argv[0], DF_MODEL_INPUTS, DF_MODEL_OUTPUTS);
    return 2;
  }
  int threads = argc > 2 + DF_MODEL_INPUTS + DF_MODEL_OUTPUTS ? atoi(argv[2 + DF_MODEL_INPUTS + DF_MODEL_OUTPUTS]) : 1;
  const void* weights = read_file(argv[1], DF_MODEL_WEIGHTS_BYTES);
  void* arena = aligned_alloc(64, (DF_MODEL_ARENA_BYTES + 63) / 64 * 64 + 64);
  if (!arena) { fprintf(stderr, "out of memory\n"); return 2; }
  memset(arena, 0, DF_MODEL_ARENA_BYTES);          /* zeroed once; reused as it is by later calls */
  const void* inputs[DF_MODEL_INPUTS + 1];
  void* outputs[DF_MODEL_OUTPUTS + 1];
  for (int k = 0; k < DF_MODEL_INPUTS; ++k) inputs[k] = read_file(argv[2 + k], df_model_input_bytes[k]);
  for (int k = 0; k < DF_MODEL_OUTPUTS; ++k) outputs[k] = aligned_alloc(64, (df_model_output_bytes[k] + 63) / 64 * 64 + 64);
  if (df_model_run(arena, weights, inputs, outputs, threads) != 0) { fprintf(stderr, "run failed\n"); return 1; }
  for (int k = 0; k < DF_MODEL_OUTPUTS; ++k) {
    FILE* f = fopen(argv[2 + DF_MODEL_INPUTS + k], "wb");
    if (!f || fwrite(outputs[k], 1, df_model_output_bytes[k], f) != df_model_output_bytes[k]) {
      fprintf(stderr, "cannot write %s\n", argv[2 + DF_MODEL_INPUTS + k]);
      return 2;
    }
    fclose(f);
  }
  return 0;
}
