# tqtrain end to end. Included from tests/CMakeLists.txt it registers the tests; run with -P it is
# the test itself (MODE = run | resume | badconfig | mpi).
#   run:       a tiny Tequila QAT run from scratch with its own SentencePiece vocabulary; checks the
#              exit status, the metrics lines and the checkpoint layout.
#   resume:    3 steps, then `tqtrain` again resumes from latest to step 6: every loss equals the
#              uninterrupted run's, digit for digit (the JSON doubles round-trip).
#   badconfig: a bad value and an unknown key fail with the key path and line in stderr.
#   mpi:       mpirun -np 2 with micro_batch B vs one process with B and grad_accum 2 (shuffle off):
#              losses within 2e-5 absolute (6 decimals) (docs/train.md, "MPI"); skipped without mpirun.
if(NOT CMAKE_SCRIPT_MODE_FILE)
  if(TARGET tqtrain)
    foreach(mode run resume badconfig)
      add_test(NAME tqtrain_${mode}
               COMMAND ${CMAKE_COMMAND} -DMODE=${mode} -DTQTRAIN=$<TARGET_FILE:tqtrain>
                       -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/tqtrain_${mode} -P ${CMAKE_CURRENT_LIST_DIR}/train_cli.cmake)
      set_tests_properties(tqtrain_${mode} PROPERTIES LABELS "apps" TIMEOUT 300)
    endforeach()
    add_test(NAME tqtrain_mpi
             COMMAND ${CMAKE_COMMAND} -DMODE=mpi -DTQTRAIN=$<TARGET_FILE:tqtrain>
                     -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/tqtrain_mpi -P ${CMAKE_CURRENT_LIST_DIR}/train_cli.cmake)
    set_tests_properties(tqtrain_mpi PROPERTIES LABELS "apps;nosan" TIMEOUT 300 SKIP_RETURN_CODE 77)
  endif()
  return()
endif()

file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/corpus)

# A small generated corpus: paragraphs of varied sentences.
set(subjects "the farmer" "a young woman" "the old king" "my brother" "the merchant" "a tired soldier" "the teacher")
set(verbs "walked to" "looked at" "spoke with" "returned from" "dreamed of" "wrote about" "remembered")
set(objects "the river" "the market" "a quiet village" "the northern hills" "an empty house" "the long road" "the sea")
set(text "")
set(valid "")
foreach(i RANGE 0 179)
  math(EXPR a "${i} % 7")
  math(EXPR b "(${i} * 3 + 1) % 7")
  math(EXPR c "(${i} * 5 + 2) % 7")
  list(GET subjects ${a} s)
  list(GET verbs ${b} v)
  list(GET objects ${c} o)
  set(sentence "On day ${i}, ${s} ${v} ${o}, and nobody said a word about it. ")
  math(EXPR para "${i} % 4")
  if(i LESS 150)
    string(APPEND text "${sentence}")
    if(para EQUAL 3)
      string(APPEND text "\n\n")
    endif()
  else()
    string(APPEND valid "${sentence}")
    if(para EQUAL 3)
      string(APPEND valid "\n\n")
    endif()
  endif()
endforeach()
file(WRITE ${WORK_DIR}/corpus/train.txt "${text}")
file(WRITE ${WORK_DIR}/corpus/valid.txt "${valid}")

# write_config(<file> <run dir> <micro_batch> <grad_accum> <shuffle> <extra lines>)
function(write_config file dir mb accum shuffle)
  file(WRITE ${file} "model:
  init: scratch
  vocab_size: 160
  hidden_size: 64
  intermediate_size: 128
  num_hidden_layers: 2
  num_attention_heads: 4
  num_key_value_heads: 2
  max_position_embeddings: 64
quant: {method: tequila, lambda: 1.0e-3, granularity: group, group_size: 64}
data:
  train: [\"${WORK_DIR}/corpus/train.txt\"]
  valid: [\"${WORK_DIR}/corpus/valid.txt\"]
  seq_len: 32
  tokenizer: ${WORK_DIR}/tok/spm.model
  tokenizer_train: {vocab_size: 160, model_type: bpe, byte_fallback: false}
  shuffle: ${shuffle}
  shuffle_block: 16
optim: {lr: 3.0e-3, betas: [0.9, 0.95], weight_decay: 0.01, grad_clip: 1.0}
schedule: {name: constant, warmup_steps: 2}
train: {micro_batch: ${mb}, grad_accum: ${accum}, max_steps: 6, seed: 7, threads: 1}
eval: {every: 3, batches: 2}
checkpoint: {dir: ${dir}, every: 3, keep: 2}
log: {every: 1}
")
endfunction()

function(run_tqtrain expect_ok)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(rc "${rc}" PARENT_SCOPE)
  set(err "${err}" PARENT_SCOPE)
  if(expect_ok AND NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\nstdout: ${out}\nstderr: ${err}")
  endif()
endfunction()

# The "loss" values of a metrics file, as written (digits).
function(read_losses file outvar)
  file(STRINGS ${file} lines)
  set(losses "")
  foreach(l IN LISTS lines)
    if(l MATCHES "\"loss\":([-0-9.eE+]+)")
      list(APPEND losses "${CMAKE_MATCH_1}")
    endif()
  endforeach()
  set(${outvar} "${losses}" PARENT_SCOPE)
endfunction()

if(MODE STREQUAL "run")
  write_config(${WORK_DIR}/a.yaml ${WORK_DIR}/run_a 4 2 true)
  run_tqtrain(TRUE ${TQTRAIN} ${WORK_DIR}/a.yaml)
  foreach(f tok/spm.model run_a/latest run_a/metrics.jsonl run_a/config.resolved.yaml run_a/step-000006/model.safetensors
          run_a/step-000006/optimizer.safetensors run_a/step-000006/trainer_state.json run_a/step-000006/config.json
          run_a/step-000006/tokenizer.model run_a/step-000003/config.json)
    if(NOT EXISTS ${WORK_DIR}/${f})
      message(FATAL_ERROR "missing ${f} after the run")
    endif()
  endforeach()
  file(READ ${WORK_DIR}/run_a/latest latest)
  if(NOT latest MATCHES "^step-000006")
    message(FATAL_ERROR "latest is '${latest}', expected step-000006")
  endif()
  file(READ ${WORK_DIR}/run_a/step-000006/config.json cfg)
  string(JSON method GET "${cfg}" quantization_config method)
  if(NOT method STREQUAL "tequila")
    message(FATAL_ERROR "config.json quantization_config.method = '${method}'")
  endif()
  read_losses(${WORK_DIR}/run_a/metrics.jsonl losses)
  list(LENGTH losses n)
  if(NOT n EQUAL 6)
    message(FATAL_ERROR "expected 6 loss lines, got ${n}")
  endif()
  file(STRINGS ${WORK_DIR}/run_a/metrics.jsonl vl REGEX "valid_loss")
  list(LENGTH vl nv)
  if(NOT nv EQUAL 2)
    message(FATAL_ERROR "expected 2 validation lines (steps 3 and 6), got ${nv}")
  endif()
  # Running it again does nothing: it resumes at step 6 = max_steps.
  run_tqtrain(TRUE ${TQTRAIN} ${WORK_DIR}/a.yaml)
  message(STATUS "tqtrain run: losses ${losses}")

  # eval.tasks: a multiple-choice task scored at every validation step; its acc lands in the metrics.
  file(WRITE ${WORK_DIR}/tasks/days.jsonl
       "{\"context\": \"On day 3, the farmer walked to\", \"choices\": [\"the river\", \"the sea\"], \"gold\": 0}\n"
       "{\"context\": \"and nobody said a word\", \"choices\": [\"about it.\", \"the market\"], \"gold\": 0}\n")
  file(READ ${WORK_DIR}/a.yaml cfg_text)
  string(REPLACE "eval: {every: 3, batches: 2}" "eval: {every: 3, batches: 2, tasks: [\"${WORK_DIR}/tasks/*.jsonl\"]}"
         cfg_text "${cfg_text}")
  string(REPLACE "${WORK_DIR}/run_a" "${WORK_DIR}/run_t" cfg_text "${cfg_text}")
  file(WRITE ${WORK_DIR}/t.yaml "${cfg_text}")
  run_tqtrain(TRUE ${TQTRAIN} ${WORK_DIR}/t.yaml)
  file(STRINGS ${WORK_DIR}/run_t/metrics.jsonl tl REGEX "\"tasks\":{\"days\":{\"acc\":")
  list(LENGTH tl nt)
  if(NOT nt EQUAL 2)
    message(FATAL_ERROR "expected 2 metrics lines with tasks.days.acc (steps 3 and 6), got ${nt}")
  endif()
  read_losses(${WORK_DIR}/run_t/metrics.jsonl losses_t)
  if(NOT losses_t STREQUAL losses)
    message(FATAL_ERROR "scoring eval.tasks changed the training losses:\n ${losses_t}\nvs ${losses}")
  endif()
elseif(MODE STREQUAL "resume")
  write_config(${WORK_DIR}/a.yaml ${WORK_DIR}/run_a 4 2 true)
  write_config(${WORK_DIR}/b.yaml ${WORK_DIR}/run_b 4 2 true)
  run_tqtrain(TRUE ${TQTRAIN} ${WORK_DIR}/a.yaml)
  run_tqtrain(TRUE ${TQTRAIN} ${WORK_DIR}/b.yaml --override train.max_steps=3)
  run_tqtrain(TRUE ${TQTRAIN} ${WORK_DIR}/b.yaml)
  if(NOT err MATCHES "resumed from .*step-000003")
    message(FATAL_ERROR "the second run did not resume from step 3:\n${err}")
  endif()
  read_losses(${WORK_DIR}/run_a/metrics.jsonl la)
  read_losses(${WORK_DIR}/run_b/metrics.jsonl lb)
  if(NOT la STREQUAL lb)
    message(FATAL_ERROR "resumed losses differ:\n uninterrupted ${la}\n resumed       ${lb}")
  endif()
  # --resume with an explicit directory from a fresh run dir works as well.
  write_config(${WORK_DIR}/c.yaml ${WORK_DIR}/run_c 4 2 true)
  run_tqtrain(TRUE ${TQTRAIN} ${WORK_DIR}/c.yaml --resume ${WORK_DIR}/run_b/step-000003)
  read_losses(${WORK_DIR}/run_c/metrics.jsonl lc)
  list(SUBLIST la 3 3 la_tail)
  if(NOT lc STREQUAL la_tail)
    message(FATAL_ERROR "--resume losses differ: ${lc} vs ${la_tail}")
  endif()
  message(STATUS "tqtrain resume: identical losses ${la}")
elseif(MODE STREQUAL "badconfig")
  write_config(${WORK_DIR}/a.yaml ${WORK_DIR}/run_a 4 2 true)
  file(READ ${WORK_DIR}/a.yaml good)
  string(REPLACE "lr: 3.0e-3" "lr: -1" bad "${good}")
  file(WRITE ${WORK_DIR}/bad.yaml "${bad}")
  run_tqtrain(FALSE ${TQTRAIN} ${WORK_DIR}/bad.yaml)
  if(rc EQUAL 0 OR NOT err MATCHES "bad.yaml:19: optim.lr: must be > 0")
    message(FATAL_ERROR "a negative lr must fail naming optim.lr and line 19: rc=${rc}\n${err}")
  endif()
  string(REPLACE "  seq_len: 32" "  seq_len: 32\n  seqlen: 3" bad "${good}")
  file(WRITE ${WORK_DIR}/bad2.yaml "${bad}")
  run_tqtrain(FALSE ${TQTRAIN} ${WORK_DIR}/bad2.yaml)
  if(rc EQUAL 0 OR NOT err MATCHES "bad2.yaml:15: data.seqlen: unknown key")
    message(FATAL_ERROR "an unknown key must fail naming data.seqlen and line 15: rc=${rc}\n${err}")
  endif()
  run_tqtrain(FALSE ${TQTRAIN} ${WORK_DIR}/a.yaml --override quant.group_size=48)
  if(rc EQUAL 0 OR NOT err MATCHES "quant.group_size: must divide")
    message(FATAL_ERROR "--override quant.group_size=48 must fail: rc=${rc}\n${err}")
  endif()
  run_tqtrain(FALSE ${TQTRAIN} ${WORK_DIR}/missing.yaml)
  if(rc EQUAL 0 OR NOT err MATCHES "cannot open")
    message(FATAL_ERROR "a missing config must fail: rc=${rc}\n${err}")
  endif()
  message(STATUS "tqtrain bad configs rejected")
elseif(MODE STREQUAL "mpi")
  find_program(MPIRUN mpirun)
  if(NOT MPIRUN)
    message("skipped: mpirun not found")
    cmake_language(EXIT 77)
  endif()
  write_config(${WORK_DIR}/one.yaml ${WORK_DIR}/run_one 2 2 false)
  write_config(${WORK_DIR}/two.yaml ${WORK_DIR}/run_two 2 1 false)
  run_tqtrain(TRUE ${TQTRAIN} ${WORK_DIR}/one.yaml)
  run_tqtrain(TRUE ${MPIRUN} --allow-run-as-root --oversubscribe -np 2 ${TQTRAIN} ${WORK_DIR}/two.yaml)
  if(NOT err MATCHES "2 rank\\(s\\)")
    message(FATAL_ERROR "mpirun -np 2 did not run two ranks:\n${err}")
  endif()
  read_losses(${WORK_DIR}/run_one/metrics.jsonl l1)
  read_losses(${WORK_DIR}/run_two/metrics.jsonl l2)
  list(LENGTH l1 n1)
  list(LENGTH l2 n2)
  if(NOT n1 EQUAL 6 OR NOT n2 EQUAL 6)
    message(FATAL_ERROR "expected 6 losses each, got ${n1} and ${n2} (rank 1 must not write metrics)")
  endif()
  # CMake has no floating point: compare the first six decimals as integers (losses are in 1..10).
  set(worst 0)
  foreach(i RANGE 0 5)
    list(GET l1 ${i} a)
    list(GET l2 ${i} b)
    string(REGEX REPLACE "^([0-9])\\.([0-9][0-9][0-9][0-9][0-9][0-9]).*" "\\1\\2" ia "${a}")
    string(REGEX REPLACE "^([0-9])\\.([0-9][0-9][0-9][0-9][0-9][0-9]).*" "\\1\\2" ib "${b}")
    math(EXPR d "${ia} - ${ib}")
    if(d LESS 0)
      math(EXPR d "-${d}")
    endif()
    if(d GREATER worst)
      set(worst ${d})
    endif()
  endforeach()
  # worst is in units of 1e-6 (truncated digits, so ±1 unit of noise): limit 20e-6 absolute ≈ 4e-6
  # relative on losses ≈ 5. Measured: ≤ 1 unit (reduction order: f64 bucket sum vs f32 accumulation).
  if(worst GREATER 20)
    message(FATAL_ERROR "mpirun -np 2 losses differ from grad_accum 2 by ${worst}e-6:\n one process ${l1}\n two ranks   ${l2}")
  endif()
  message(STATUS "tqtrain mpi: max |Δloss| = ${worst}e-6 (limit 20e-6)\n one process ${l1}\n two ranks   ${l2}")
endif()
