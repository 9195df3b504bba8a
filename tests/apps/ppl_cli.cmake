# `tqinfer ppl` end to end: the tiny-LLaMA fixture plus a 96-piece SentencePiece model trained here with
# spm_train on generated text; checks the JSON form and the error for a missing model directory.
# Variables: TQINFER, FIXTURE (tests/reference/data/tiny_llama), WORK_DIR.
find_program(SPM_TRAIN spm_train)
if(NOT SPM_TRAIN)
  message("skipped: spm_train not found (Debian package sentencepiece)")
  cmake_language(EXIT 77)
endif()
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
set(text "")
foreach(i RANGE 1 30)
  string(APPEND text "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. The quick brown fox jumps over the lazy dog number ${i}.\n")
endforeach()
file(WRITE ${WORK_DIR}/text.txt "${text}")
file(COPY ${FIXTURE}/config.json ${FIXTURE}/model.safetensors DESTINATION ${WORK_DIR})
execute_process(COMMAND ${SPM_TRAIN} --input=text.txt --model_prefix=tokenizer --vocab_size=96 --model_type=bpe
                        --character_coverage=1.0 --hard_vocab_limit=false --num_threads=1
                WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
if(rc)
  message(FATAL_ERROR "spm_train failed (${rc})")
endif()
execute_process(COMMAND ${TQINFER} ppl --fp --model ${WORK_DIR} --text ${WORK_DIR}/text.txt --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc OR NOT out MATCHES "^\\{\"tokens\": [0-9]+, \"nll\": [0-9.]+, \"ppl\": [0-9.]+[,}]")
  message(FATAL_ERROR "tqinfer ppl --json: rc=${rc}\nstdout: ${out}\nstderr: ${err}")
endif()
message(STATUS "tqinfer ppl --json: ${out}")
execute_process(COMMAND ${TQINFER} ppl --fp --model ${WORK_DIR}/missing --text ${WORK_DIR}/text.txt
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc OR NOT err MATCHES "missing")
  message(FATAL_ERROR "a missing model directory must fail with a message naming it: rc=${rc} ${err}")
endif()
