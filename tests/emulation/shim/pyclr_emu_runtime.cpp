// The emulated kernels registered as the ops torch.ops.pyclr_emu.*, taking CPU tensors; build.py
// defines their schemas as those of torch.ops.pyclr.* (csrc/pyclr.cpp).
#include <torch/library.h>

#include "kmeans/kmeans.h"
#include "ntxent/ntxent.h"
#include "pyclr_emu.h"
#include "swd/swd.h"

#if defined(__x86_64__)
// pyclr_emu_switch(save, load): saves the callee-saved registers and the SSE and x87 control
// words on the current stack, stores its pointer in *save, and resumes the context saved at
// load (the System V ABI leaves everything else to the caller). A new fiber's stack is laid out
// by make_context to "return" into pyclr_emu_trampoline, which calls rbx(r12).
asm(R"(
  .text
  .globl pyclr_emu_switch
  .hidden pyclr_emu_switch
  .type pyclr_emu_switch, @function
pyclr_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size pyclr_emu_switch, .-pyclr_emu_switch

  .globl pyclr_emu_trampoline
  .hidden pyclr_emu_trampoline
  .type pyclr_emu_trampoline, @function
pyclr_emu_trampoline:
  movq %r12, %rdi
  callq *%rbx
  ud2
  .size pyclr_emu_trampoline, .-pyclr_emu_trampoline
)");
#endif

// The CPU dispatch key: the emulated kernels take CPU tensors (and autograd, registered from
// Python as pyclr registers its own, sits above them).
TORCH_LIBRARY_IMPL(pyclr_emu, CPU, m) {
  m.impl("nt_xent_forward", &pyclr::ntxent::forward_cuda);
  m.impl("nt_xent_backward", &pyclr::ntxent::backward_cuda);
  m.impl("swd_forward", &pyclr::swd::forward_cuda);
  m.impl("kmeans_step", &pyclr::kmeans::step_cuda);
}
