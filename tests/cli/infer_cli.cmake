# tqinfer generate / eval / ppl / bench end to end on the tiny-LLaMA fixture (--fp) with a 96-piece
# SentencePiece model trained here by spm_train; checks the shape of the output (not exact text) and
# that bad arguments fail with a clear message. Included by tests/CMakeLists.txt (adds the test), and
# run as a script with -P (does the test).
if(NOT CMAKE_SCRIPT_MODE_FILE)
  if(TARGET tqinfer AND EXISTS /usr/bin/python3)
    add_test(NAME tqinfer_cli
             COMMAND ${CMAKE_COMMAND} -DTQINFER=$<TARGET_FILE:tqinfer> -DPYTHON=/usr/bin/python3
                     -DSOURCE_DIR=${PROJECT_SOURCE_DIR}
                     -DFIXTURE=${CMAKE_CURRENT_SOURCE_DIR}/reference/data/tiny_llama
                     -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/infer_cli -P ${CMAKE_CURRENT_LIST_FILE})
    set_tests_properties(tqinfer_cli PROPERTIES SKIP_RETURN_CODE 77 LABELS "apps" TIMEOUT 300)
  endif()
  return()
endif()

cmake_minimum_required(VERSION 3.20)  # script mode: modern if() and string(JSON)
find_program(SPM_TRAIN spm_train)
if(NOT SPM_TRAIN)
  message("skipped: spm_train not found (Debian package sentencepiece)")
  cmake_language(EXIT 77)
endif()
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/model ${WORK_DIR}/tasks)
set(text "")
foreach(i RANGE 1 30)
  string(APPEND text "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. The quick brown fox jumps over the lazy dog number ${i}.\n")
endforeach()
file(WRITE ${WORK_DIR}/text.txt "${text}")
file(COPY ${FIXTURE}/config.json ${FIXTURE}/model.safetensors DESTINATION ${WORK_DIR}/model)
execute_process(COMMAND ${SPM_TRAIN} --input=${WORK_DIR}/text.txt --model_prefix=tokenizer --vocab_size=96
                        --model_type=bpe --character_coverage=1.0 --hard_vocab_limit=false --num_threads=1
                WORKING_DIRECTORY ${WORK_DIR}/model RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
if(rc)
  message(FATAL_ERROR "spm_train failed (${rc})")
endif()
set(M ${WORK_DIR}/model)

# run(<name> <expect_ok> args...): runs tqinfer, leaves out/err/rc in the caller's scope.
macro(run expect_ok)
  execute_process(COMMAND ${TQINFER} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(${expect_ok} AND rc)
    message(FATAL_ERROR "tqinfer ${ARGN} failed: rc=${rc}\nstdout: ${out}\nstderr: ${err}")
  endif()
  if(NOT ${expect_ok} AND NOT rc)
    message(FATAL_ERROR "tqinfer ${ARGN} should have failed\nstdout: ${out}\nstderr: ${err}")
  endif()
endmacro()
macro(expect var regex what)
  if(NOT "${${var}}" MATCHES "${regex}")
    message(FATAL_ERROR "${what}: expected /${regex}/ in\n${${var}}\n(stderr: ${err})")
  endif()
endmacro()

# generate: greedy is deterministic and echoes the prompt; a seed reproduces a sampled run; stdin works.
run(TRUE generate --fp --model ${M} --prompt "It is a" --max-tokens 12 --temperature 0)
expect(out "^It is a.+" "generate echoes the prompt and continues")
expect(err "generated [0-9]+ tokens" "generate reports its statistics")
set(greedy1 "${out}")
run(TRUE generate --fp --model ${M} --prompt "It is a" --max-tokens 12 --temperature 0)
if(NOT out STREQUAL greedy1)
  message(FATAL_ERROR "greedy generation is not deterministic:\n${greedy1}\n${out}")
endif()
run(TRUE generate --fp --model ${M} --prompt "The quick" --max-tokens 10 --temperature 0.8 --top-k 20 --top-p 0.9 --seed 5)
set(s1 "${out}")
run(TRUE generate --fp --model ${M} --prompt "The quick" --max-tokens 10 --temperature 0.8 --top-k 20 --top-p 0.9 --seed 5)
if(NOT out STREQUAL s1)
  message(FATAL_ERROR "the same seed gave different text:\n${s1}\n${out}")
endif()
file(WRITE ${WORK_DIR}/prompt.txt "The lazy dog")
execute_process(COMMAND ${TQINFER} generate --fp --model ${M} --max-tokens 5 --temperature 0
                INPUT_FILE ${WORK_DIR}/prompt.txt RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
expect(out "^The lazy dog" "generate reads the prompt from stdin")

# eval: tasks made by scripts/make-tasks.py; results JSON in the harness's layout.
foreach(kind cloze next)
  execute_process(COMMAND ${PYTHON} ${SOURCE_DIR}/scripts/make-tasks.py --kind ${kind} --n 6 --seed 1
                          -o ${WORK_DIR}/tasks/${kind}.jsonl ${WORK_DIR}/text.txt RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(rc)
    message(FATAL_ERROR "make-tasks.py --kind ${kind} failed: ${err}")
  endif()
endforeach()
run(TRUE eval --fp --model ${M} --tasks "${WORK_DIR}/tasks/*.jsonl" --output ${WORK_DIR}/results.json --limit 4)
expect(out "\\|cloze +\\|" "eval prints a row per task")
file(READ ${WORK_DIR}/results.json results)
foreach(task cloze next)
  foreach(key "acc,none" "acc_stderr,none" "acc_norm,none" "acc_norm_stderr,none")
    string(JSON v ERROR_VARIABLE jerr GET "${results}" results ${task} "${key}")
    if(jerr OR NOT v MATCHES "^[0-9.eE+-]+$")
      message(FATAL_ERROR "results.json: results.${task}.${key} missing or not a number (${v} ${jerr})")
    endif()
  endforeach()
  string(JSON n GET "${results}" n-samples ${task} effective)
  if(NOT n EQUAL 4)
    message(FATAL_ERROR "results.json: n-samples.${task}.effective is ${n}, --limit 4 expected")
  endif()
endforeach()

# ppl: token-level perplexity and bits per byte.
run(TRUE ppl --fp --model ${M} --text ${WORK_DIR}/text.txt --json)
expect(out "^\\{\"tokens\": [0-9]+, \"nll\": [0-9.]+, \"ppl\": [0-9.]+, \"bytes\": [0-9]+, \"bits_per_byte\": [0-9.]+\\}"
       "ppl --json")

# bench: a table with the pp and tg rows.
run(TRUE bench --fp --model ${M} -p 16 -n 8 -r 2 -t 1 --no-probes)
expect(out "\\| pp16 +\\| +1 \\|" "bench prints a pp16 row")
expect(out "\\| tg8 +\\| +1 \\|" "bench prints a tg8 row")
run(TRUE bench --fp --shape tiny -p 8 -n 4 -r 1 -t 1 --no-probes --json)
expect(out "\"median_tokens_per_s\"" "bench --json")

# The default back end (the engine; the fixture has no quantization_config, so it lowers to dense f32
# linears), convert to a packed file, and run from that file.
run(TRUE generate --model ${M} --prompt "It is a" --max-tokens 8 --temperature 0)
expect(out "^It is a.+" "generate on the engine")
expect(err "generate: dense f32" "the engine describes itself")
run(TRUE ppl --model ${M} --text ${WORK_DIR}/text.txt --json)
expect(out "\"bits_per_byte\": [0-9.]+" "ppl on the engine")
run(TRUE convert --model ${M} --output ${WORK_DIR}/model/model.tqpk)
run(TRUE generate --model ${WORK_DIR}/model/model.tqpk --prompt "It is a" --max-tokens 8 --temperature 0)
expect(out "^It is a.+" "generate from the packed file")
run(TRUE eval --model ${WORK_DIR}/model/model.tqpk --tasks ${WORK_DIR}/tasks/cloze.jsonl --limit 2)
expect(out "\\|cloze +\\|" "eval from the packed file")
# A file converted with another LM head runs without repeating --lm-head (it follows the file).
run(TRUE convert --model ${M} --lm-head f32 --output ${WORK_DIR}/model/model-f32.tqpk)
run(TRUE generate --model ${WORK_DIR}/model/model-f32.tqpk --prompt "It is a" --max-tokens 4 --temperature 0)
expect(err "lm_head f32" "a packed file's head is followed")
run(FALSE generate --model ${WORK_DIR}/model/model-f32.tqpk --lm-head bf16 --prompt x --max-tokens 1)
expect(err "LM head is f32 but the options ask for bf16" "an explicit other head is refused")
run(TRUE bench --shape tiny -p 16 -n 8 -r 1 -t 1 --no-probes)
expect(out "packed ternary" "bench --shape builds a packed ternary engine")
run(TRUE bench --shape tiny --dense bf16 -p 8 -n 4 -r 1 -t 1 --no-probes)
expect(out "dense bf16" "bench --shape --dense bf16")

# Bad arguments fail with a message naming the problem.
run(FALSE generate --fp --model ${M} --prompt x --top-p 2)
expect(err "top_p" "a bad --top-p")
run(FALSE eval --fp --model ${M} --tasks "${WORK_DIR}/tasks/none-*.jsonl")
expect(err "matches no file" "a --tasks glob without files")
file(WRITE ${WORK_DIR}/tasks/bad.jsonl "{\"context\": \"c\", \"choices\": [\"a\"], \"gold\": 0}\n{oops}\n")
run(FALSE eval --fp --model ${M} --tasks ${WORK_DIR}/tasks/bad.jsonl)
expect(err "bad.jsonl:2" "a malformed task line")
run(FALSE generate --model ${WORK_DIR}/model/config.json --fp --prompt x)
expect(err "--fp needs a checkpoint directory" "--fp on a file")
run(FALSE bench --fp -p 8)
expect(err "--model DIR or --shape" "bench without a model")
run(FALSE bench --fp --shape tiny --dense bf16)
expect(err "--dense is for the engine" "--dense with --fp")
run(FALSE bench --fp --shape nope)
expect(err "unknown --shape 'nope'" "an unknown --shape")
run(FALSE ppl --fp --model ${WORK_DIR}/missing --text ${WORK_DIR}/text.txt)
expect(err "missing" "a missing model directory")
run(FALSE generate --fp --model ${M} --prompt "It is a" --max-tokens 5 --temperature -1)
expect(err "temperature" "a negative temperature")
message(STATUS "tqinfer CLI: generate, eval, ppl, bench and argument errors OK")
