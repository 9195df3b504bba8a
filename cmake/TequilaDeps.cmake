# Third-party dependencies, all from Debian packages (scripts/install-deps.sh installs them).
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(Threads REQUIRED)
find_package(Eigen3 3.3 REQUIRED NO_MODULE)
find_package(dnnl REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
find_package(yaml-cpp REQUIRED)
if(TQ_BUILD_TESTS)
  find_package(doctest REQUIRED)
endif()
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)

# MPI is optional: with it tqtrain all-reduces gradients across ranks; without it the same API runs
# one process (train/distributed.h).
find_package(MPI COMPONENTS CXX QUIET)
find_package(PNG QUIET)
